//! The bridgemesh control node: the join API, the replicated room and bridge state, placement,
//! the bridges' sessions and failure detection, bridge tickets and the web client.
//!
//! # Layout
//! - [`state`]: the state machine — typed [`state::Command`]s applied deterministically
//!   (`state/bridges.rs`: registration, drains, moving participants off a bridge).
//! - [`placement`]: which bridge a participant goes to, a pure function of the state and where
//!   the participant is.
//! - [`failure_detector`]: when a silent bridge is unreachable and when it is dead; pure.
//! - [`hub_engine`]: what the leader decides about the bridges' sessions (registrations, the
//!   detector's verdicts, load commits, reconcile, instructions); sans-IO, driven by `now`.
//! - [`bridge_hub`]: the bridges' WebSocket sessions on the leader; the engine's driver.
//! - [`cascade_membership`]: which bridges share each room, and the changes to push to them; pure.
//! - [`load_throttle`]: which of a bridge's load reports the leader commits; pure.
//! - [`geo`], [`client_ip`], [`cidr`] (from proto), [`locator`]: where a client is (a MaxMind DB, through
//!   trusted proxies' headers), distances, made-up test databases.
//! - [`auth`]: join tokens (Jitsi's JWT format), the guest policy, the admin credential; pure.
//! - [`hosts`]: host accounts without a token server: the login limiter, host sessions and
//!   invite tokens; pure (the accounts live in the state, `state/hosts.rs`).
//! - [`rate_limit`]: per-address token buckets for the unauthenticated join endpoint.
//! - [`raft`]: openraft with a redb store, the peer transport, cluster operations.
//! - [`node`]: [`ControlNode`]: join, reconnect, the lobby, moderation, drains, tickets.
//! - [`participant_media`]: the bridges' reports of their participants' media (the admin API's room view).
//! - [`join_key`]: whose budget a join spends (the resolved client address, IPv6 by /64).
//! - [`http_guard`]: the HTTP server every node runs: header and body timeouts, connection caps.
//! - [`http`]: the axum driver: `/api/v1/...`, the bridge session, `/health`, `/metrics`, the
//!   web client.
//! - [`service`]: a running node (Raft, HTTP, the ticker, the bridge hub).
//! - [`web`]: the browser client's files, compiled in.
//!
//! # Run loop
//! ```text
//! POST /api/v1/rooms/{room}/join → token, policy → locate the client → placement::choose_bridge
//!     → commit Command::Join through Raft → sign a ticket for that bridge → JSON answer
//! bridge session (leader): register → commit RegisterBridge; heartbeats → failure detector;
//!     joined / left → commit Confirm | Leave; detector verdicts → commit SetBridgeStatus
//! applied outcomes (kicks, ended rooms, moves) → the bridges concerned
//! every 50 ms (leader): rooms whose set of bridges changed → room_bridges to those bridges
//! every 2 s (leader) → commit Tick (expiries, rooms ending, drains whose grace ended)
//! ```

pub mod auth;
pub mod bridge_hub;
pub mod cascade_membership;
pub use bridgemesh_proto::cidr;
pub mod client_ip;
pub mod failure_detector;
pub mod geo;
pub mod hosts;
pub mod http;
pub mod http_guard;
pub mod hub_engine;
pub mod join_key;
pub mod load_throttle;
pub mod locator;
pub mod metrics;
pub mod node;
pub mod oidc;
pub mod participant_media;
pub mod password;
pub mod placement;
pub mod raft;
pub mod rate_limit;
pub mod service;
pub mod session;
pub mod state;
pub mod web;

pub use node::{ApiError, ControlNode};
