//! Recording from the driver's side: the writer a shard asks for is started here (the directory,
//! its free space and the file are I/O), and the operator's start, stop and list reach the
//! room's shard as inputs.

use super::*;
use crate::recording::{RecordingInfo, RecordingStore, now_unix_ms};
use crate::shard::{RecordingInput, RecordingRequester};
use bridgemesh_proto::api::ErrorCode;

/// How long a stopping bridge waits for its recordings' writers to finish their files.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the writer for `room` (a few file-system calls on the shard's thread, once per
/// recording): the shard's answer.
pub(super) fn start(
    store: Option<&Arc<RecordingStore>>,
    room: RoomId,
    requester: RecordingRequester,
) -> RecordingInput {
    let Some(store) = store else {
        return RecordingInput::Refused {
            room,
            code: ErrorCode::NotFound,
            message: "recording is not enabled on this bridge".into(),
            requester,
        };
    };
    match store.start(&room, now_unix_ms()) {
        Ok(handle) => RecordingInput::Started {
            room,
            handle,
            requester,
        },
        Err(err) => {
            tracing::warn!(%room, %err, "recording refused");
            RecordingInput::Refused {
                room,
                code: ErrorCode::NoCapacity,
                message: err.to_string(),
                requester,
            }
        }
    }
}

/// Why the operator's recording call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingCallError {
    #[error("recording is not enabled on this bridge")]
    Disabled,
    /// The shard's refusal (no such room here, already recording, low disk space ...).
    #[error("{1}")]
    Refused(bridgemesh_proto::api::ErrorCode, String),
    #[error("the bridge is stopping")]
    Stopped,
    #[error("cannot read the recordings directory: {0}")]
    Io(#[from] std::io::Error),
}

impl Bridge {
    /// The recordings directory, when this bridge records.
    pub fn recordings(&self) -> Option<&Arc<RecordingStore>> {
        self.recordings.as_ref()
    }

    /// Starts recording `room` here; the recording's file name.
    pub async fn start_recording(&self, room: &RoomId) -> Result<String, RecordingCallError> {
        self.recording_call(room, true).await
    }

    /// Stops the recording of `room` here; the file name of the recording stopped.
    pub async fn stop_recording(&self, room: &RoomId) -> Result<String, RecordingCallError> {
        self.recording_call(room, false).await
    }

    /// Recordings in the directory, newest first.
    pub fn list_recordings(&self) -> Result<Vec<RecordingInfo>, RecordingCallError> {
        let store = self.recordings.as_ref().ok_or(RecordingCallError::Disabled)?;
        Ok(store.list()?)
    }

    /// After the shards stopped (their rooms, and so their recorders, are gone): waits for the
    /// writers to finish their files, at most [`FINISH_TIMEOUT`].
    pub(super) async fn finish_recordings(&self) {
        let Some(store) = &self.recordings else {
            return;
        };
        let deadline = tokio::time::Instant::now() + FINISH_TIMEOUT;
        while store.active_count() > 0 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    recordings = store.active_count(),
                    "recordings not finished at shutdown: their files end where they stopped"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn recording_call(&self, room: &RoomId, start: bool) -> Result<String, RecordingCallError> {
        if self.recordings.is_none() {
            return Err(RecordingCallError::Disabled);
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let requester = RecordingRequester {
            by: None,
            reply: Some(reply),
        };
        let room = room.clone();
        let input = if start {
            RecordingInput::Start {
                room: room.clone(),
                requester,
            }
        } else {
            RecordingInput::Stop {
                room: room.clone(),
                requester,
            }
        };
        self.inbox_for(&room)
            .send(DriverInput::Shard(ShardInput::Recording(input)))
            .await
            .map_err(|_| RecordingCallError::Stopped)?;
        answer
            .await
            .map_err(|_| RecordingCallError::Stopped)?
            .map_err(|(code, message)| RecordingCallError::Refused(code, message))
    }
}
