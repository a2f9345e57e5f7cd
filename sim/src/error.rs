//! The one error type of this crate.

use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::api::ErrorCode;
use bridgemesh_proto::signaling::MediaSource;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParticipantError {
    /// Control could not be reached (connection refused, reset, bad URL, …).
    #[error("control unreachable: {0}")]
    Connect(String),
    /// Control answered with an error status. `code` is `None` when the body was not the
    /// `{"error": {...}}` envelope.
    #[error("control answered HTTP {status} ({code:?}): {message}")]
    Http {
        status: u16,
        code: Option<ErrorCode>,
        message: String,
    },
    /// The bridge sent a signaling `error` (e.g. `ticket_rejected`) where a result was awaited.
    #[error("bridge error {code:?}: {message}")]
    Server { code: ErrorCode, message: String },
    /// The signaling WebSocket failed, closed, or is no longer running.
    #[error("signaling: {0}")]
    Signaling(String),
    /// The WebRTC stack refused an operation.
    #[error("webrtc: {0}")]
    WebRtc(String),
    #[error("timed out: {0}")]
    Timeout(String),
    /// The other side broke the protocol (unexpected message, malformed body, …).
    #[error("protocol: {0}")]
    Protocol(String),
    /// No track from that participant's source is being received.
    #[error("not receiving {media:?} from {participant}")]
    NotReceiving {
        participant: ParticipantId,
        media: MediaSource,
    },
}

impl From<webrtc::error::Error> for ParticipantError {
    fn from(e: webrtc::error::Error) -> Self {
        ParticipantError::WebRtc(e.to_string())
    }
}
