//! Synthetic bridgemesh participants: real WebRTC clients (the async `webrtc` crate) that join a
//! room through control, answer the bridge's offers, publish stamped audio and VP8-shaped video,
//! verify every byte they receive, and reconnect through control when their bridge is lost. Used
//! by the end-to-end tests and by `bridgemesh load`.
//!
//! # Layout
//! - [`participant`]: [`SyntheticParticipant`] (join, the signaling and reconnect driver,
//!   leave/vanish, `wait_until`) and [`ParticipantOptions`].
//! - [`reconnect`]: when to reconnect and how often to retry (pure decisions).
//! - `control_api`: the control HTTP calls (join, reconnect, lobby).
//! - [`media`]: [`MediaSession`], one peer connection that takes offers and returns answers;
//!   no signaling, so tests can drive it from any offerer. `renew` continues it on a new
//!   connection.
//! - [`payload`]: the stamped RTP payloads (pure functions): build, packetize, verify.
//! - [`stats`]: [`ParticipantStats`] snapshots and the bounded accumulators behind them.
//! - [`error`]: the crate's one error type, [`ParticipantError`].
//! - [`replay`]: the cheap load generator's participants (a real join, ICE and DTLS; SRTP sealed
//!   and sampled by the bridge's own code), for `bridgemesh load-replay`.
//! - [`simulator`]: the network simulator (`bridgemesh sim run`): the real control-plane code on
//!   virtual time with modeled bridges, clients and links.
//!
//! # Run loop
//! 1. `POST /api/v1/rooms/{room}/join` → signaling URL and ticket (after the lobby, if any).
//! 2. Build the peer connection on `127.0.0.1:0` (or `bind_ip`) and `add_track` the
//!    microphone/camera tracks *before* any offer, so the bridge's recvonly m-lines adopt them.
//! 3. WebSocket: `hello` → `welcome` → `offer` → `answer`; `join` returns here.
//! 4. A driver task answers every further offer in order and keeps the roster; sender tasks
//!    send 50 audio packets/s and `fps` frames/s once connected (keyframe every interval or on
//!    PLI/FIR); one task per remote track verifies and accounts its packets.
//! 5. Session lost (socket closed, `bye{moved}`, peer connection failed): the driver closes the
//!    peer connection, asks control where to go (`POST …/participants/{id}/reconnect`) with
//!    capped backoff within a budget, and goes back to 3 with the answer's ticket and a new peer
//!    connection that continues the same streams and stats.
//! 6. `leave` (or `vanish`) stops every task and closes socket and connection.
//!
//! Everything is bounded: remote streams, roster, latency samples, sequence windows, channels,
//! reconnect records, retries.

mod control_api;
pub mod error;
pub mod media;
pub mod participant;
pub mod payload;
pub mod reconnect;
pub mod replay;
pub mod simulator;
pub mod stats;

pub use error::ParticipantError;
pub use media::MediaSession;
pub use participant::{ParticipantOptions, SyntheticParticipant};
pub use stats::{ParticipantStats, ReceivedStats, ReconnectRecord, SentStats, SessionLoss};
pub use webrtc::peer_connection::RTCPeerConnectionState;
