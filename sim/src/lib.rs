//! Synthetic bridgemesh participants: real WebRTC clients (the async `webrtc` crate) that join a
//! room through control, answer the bridge's offers, publish stamped audio and VP8-shaped video,
//! and verify every byte they receive. Used by the end-to-end tests and by `bridgemesh load`.
//!
//! # Layout
//! - [`participant`]: [`SyntheticParticipant`] (join, signaling driver, leave/vanish,
//!   `wait_until`) and [`ParticipantOptions`].
//! - [`media`]: [`MediaSession`], one peer connection that takes offers and returns answers;
//!   no signaling, so tests can drive it from any offerer.
//! - [`reconnect`]: when to reconnect after losing the bridge and how often to retry (pure
//!   decisions).
//! - [`payload`]: the stamped RTP payloads (pure functions): build, packetize, verify.
//! - [`stats`]: [`ParticipantStats`] snapshots and the bounded accumulators behind them.
//! - [`error`]: the crate's one error type, [`ParticipantError`].
//!
//! # Run loop
//! 1. `POST /api/v1/rooms/{room}/join` → signaling URL and ticket.
//! 2. Build the peer connection on `127.0.0.1:0` and `add_track` the microphone/camera tracks
//!    *before* any offer, so the bridge's recvonly m-lines adopt them.
//! 3. WebSocket: `hello` → `welcome` → `offer` → `answer`; `join` returns here.
//! 4. A driver task answers every further offer in order and keeps the roster; sender tasks
//!    send 50 audio packets/s and `fps` frames/s once connected (keyframe every interval or on
//!    PLI/FIR); one task per remote track verifies and accounts its packets.
//! 5. `leave` (or `vanish`) stops every task and closes socket and connection.
//!
//! Everything is bounded: remote streams, roster, latency samples, sequence windows, channels.

pub mod error;
pub mod media;
pub mod participant;
pub mod payload;
pub mod reconnect;
pub mod stats;

pub use error::ParticipantError;
pub use media::MediaSession;
pub use participant::{ParticipantOptions, SyntheticParticipant};
pub use stats::{ParticipantStats, ReceivedStats, ReconnectRecord, SentStats, SessionLoss};
pub use webrtc::peer_connection::RTCPeerConnectionState;
