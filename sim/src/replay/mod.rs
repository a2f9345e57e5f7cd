//! The cheap load generator: participants that join like any client and then cost less than the
//! bridge they load, so that a benchmark can push a bridge past 100,000 forwarded packets/s on
//! the same machine (`bridgemesh load-replay`, docs/benchmarks.md).
//!
//! What is real and what is cheap:
//! - **The join is the documented one**: `POST /api/v1/rooms/{room}/join`, the signaling
//!   WebSocket (`hello`, `welcome`, every `offer` answered), ICE (full agent, controlling, with
//!   `rtc`'s consent checks) and the DTLS handshake (sans-IO `rtc` on the participant's own UDP
//!   socket). The bridge sees a WebRTC client like any other.
//! - **Keys**: once DTLS completes, the participant exports the SRTP keys from its handshake
//!   with the bridge's own [`export_srtp_keys`](bridgemesh_bridge::fastpath::export_srtp_keys)
//!   (the profile the bridge picked; AEAD_AES_128_GCM against every bridge that offers it).
//! - **Publishing** ([`tx`], [`pacer`]): one VP8-shaped video stream of stamped payloads
//!   ([`crate::payload`]), every packet sealed with the bridge's own SRTP code
//!   (`SrtpSendStream`, `ring`'s AES-GCM: about 0.3–0.5 µs a packet), paced at a fixed packet
//!   rate and written with `sendmmsg`. Nothing is replayed byte for byte: SRTP's IV includes
//!   the packet index, so a sealed packet is valid once; sealing is the cheap part anyway.
//! - **Receiving** ([`rx`]): `recvmmsg` into buffers allocated once; RTP never enters `rtc`.
//!   Every packet is counted per SSRC from its clear header (sequence gaps are loss); one in
//!   [`rx::SAMPLE_EVERY`] per stream is opened (SRTP authentication) and its payload verified
//!   byte for byte, which also gives the latency of the samples. RTCP, STUN and DTLS go to
//!   `rtc`.
//!
//! What it does not do: audio, simulcast, NACKs or keyframe requests of its own (a receiver
//! never asks for anything; a publisher sends a keyframe every 2 s whatever it is asked),
//! reconnects. [`crate::SyntheticParticipant`] is the full client for that.

pub mod pacer;
pub mod rx;
pub mod session;
pub mod tx;

pub use pacer::PacerCounters;
pub use rx::RxCounters;
pub use session::{Publishing, ReplayParticipant};
