//! The bridgemesh bridge: a selective forwarding unit with every participant on one UDP port.
//!
//! # Layout
//! - [`bwe`]: send-side bandwidth estimation per subscriber (transport-cc) and the allocator.
//! - [`cascade`]: bridge-to-bridge QUIC links, the cluster CA and bridge certificates.
//! - [`config`]: [`BridgeConfig`], validated before anything binds.
//! - [`consent`]: consent freshness (RFC 7675) on the ICE-lite side; keyframes on a moved path.
//! - [`demux`]: routing a datagram to its participant (STUN USERNAME first, then the 4-tuple).
//! - [`fastpath`]: the bridge's own RTP path after DTLS: SRTP on keys exported from the
//!   handshake, per-leg rewriting in place, one retransmission ring per published stream.
//! - [`peer`]: one participant's `rtc` peer connection (ICE-lite, the shared port as candidate).
//! - [`participant`]: receiving slots, sending legs and negotiation state of one participant.
//! - `legs`: a subscriber's sending legs, kept in line with what the room publishes.
//! - [`shard`]: the forwarding engine, a sans-IO state machine over the rooms one thread owns.
//! - [`driver`]: threads, the UDP sockets (one `SO_REUSEPORT` socket per shard on the one media
//!   port, read and written in batches) and timers around the shards.
//! - [`signaling`]: the WebSocket endpoint, authenticated by control's tickets.
//! - [`signaling_limits`]: per-client token buckets per message kind, and the refusal budget past
//!   which a flooding client is disconnected.
//! - [`client_outbox`]: one client's bounded outgoing queue, coalescing room state for slow readers.
//! - [`metrics`]: `/metrics`, the shards', links' and process's figures (prometheus-client).
//! - [`ticket`]: ticket verification with a single-use cache.
//! - [`removed_participants`]: the bounded memory of kicked participants whose tickets are refused.
//! - [`recording`]: a room recorded without decoding into one WebM file (its writer thread, limits).
//! - [`recording_http`]: the bridge's admin API for recordings (list, start, stop, download).
//! - [`room_chat`]: a room's chat (history for late joiners, ids, deletes, who a message goes to).
//! - [`simulcast`]: one layer per source per subscriber: the layer selector (keyframe switches,
//!   continuous renumbering), VP8 descriptors, receiver constraints, the offer's RID lines.
//! - [`sdp_munge`]: the bridge's candidates in every m-section of its offers, for non-browser stacks.
//! - [`keyframe_requests`]: lets inbound PLI/FIR, NACK and sender reports past `rtc`'s
//!   interceptor chain to the application.
//! - [`control_session`]: the session with control (register, heartbeat, reconnect, control's
//!   instructions), a sans-IO state machine.
//! - [`control_agent`]: [`ControlAgent`], the driver running that session over a WebSocket.
//! - [`load`]: CPU, packet rate and participants folded into the `stress` control places by.
//! - [`splitmix`]: the seeded random source behind backoff jitter (and the simulator).
//!
//! # Run loop
//! ```text
//! shard thread i:  wait(own socket readable | handed over | inbox | next timeout)
//!                  recvmmsg batch → each datagram → RouteTable → mine? shard.handle_input
//!                                                              : copy into shard j's handoff slots
//!                  handed over → shard.handle_input (the kernel keeps each peer on one socket)
//!                  inbox    → shard.handle_input(now, Connect | Client | Disconnect | Datagram | Moderation)
//!                  timeout  → shard.handle_timeout(now)
//!                  drain shard.poll_output(): Transmit → send batch (sendmmsg when full and at the
//!                  end of the wake-up), ToClient → that client's socket task
//! ```
//! A publisher's RTP comes out of its `rtc` connection decrypted; the shard keeps it in the stream's
//! retransmission ring and writes it to each subscriber leg through [`fastpath`] (rewrite and SRTP
//! in place, into one output arena), not through the subscriber's `rtc` connection. Packets from
//! cascade links enter the same `deliver`.
//! Rooms are spread over shards by a hash of the room id, so a room's forwarding never crosses threads.
//! Control's instructions ([`Bridge::kick`], [`Bridge::move_participant`], [`Bridge::request_mute_all`],
//! [`Bridge::end_room`]) go the same way, to the inbox of the shard that owns the room.
//!
//! ```text
//! control agent:   wait(bridge event | control frame | command | load tick | session timeout)
//!                  → session.handle_input / handle_timeout
//!                  drain session.poll_output(): Connect → connection task, Send/Ping → its queue,
//!                  Moderate → Bridge::carry_out, Status → watch channel
//! ```

pub mod bwe;
pub mod cascade;
pub mod client_outbox;
pub mod config;
pub mod consent;
pub mod control_agent;
pub mod control_session;
pub mod demux;
pub mod dominant_speaker;
pub mod driver;
pub mod fastpath;
pub mod keyframe_requests;
mod legs;
pub mod load;
pub mod metrics;
pub mod participant;
pub mod peer;
pub mod recording;
pub mod recording_http;
pub mod removed_participants;
pub mod room_chat;
pub mod sdp_munge;
pub mod shard;
pub mod signaling;
pub mod signaling_limits;
pub mod simulcast;
pub mod splitmix;
pub mod ticket;

pub use config::{BridgeConfig, ConfigError, MediaSocketConfig};
pub use control_agent::{AgentError, ControlAgent, ControlAgentConfig};
pub use control_session::SessionStatus;
pub use driver::recording::RecordingCallError;
pub use driver::{Bridge, BridgeStats, StartError};
pub use shard::{BridgeEvent, ModerationAction};
