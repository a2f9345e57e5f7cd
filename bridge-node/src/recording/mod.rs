//! Recording a room on the bridge, without decoding: the room's forwarded VP8 and Opus become
//! one WebM file per recording with a track per (participant, source).
//!
//! # Layout
//! - `depacketize`: frames out of RTP (VP8 by RFC 7741, Opus one packet per frame), 64-bit
//!   sequence numbers and timestamps, loss handling.
//! - `ebml`, `webm`: the file format; tracks may be added while the file is written.
//! - `recorder`: [`RoomRecorder`], the sans-IO part on the shard owning the room.
//! - `writer`: the recording's own thread: the file, its limits, the disk's free space.
//! - `store`: the directory: names, the manifest beside each file, listing.
//!
//! # Flow
//! ```text
//! shard: deliver(packet) → room.recording? → RoomRecorder::on_packet → frame → try_send ─┐
//!        (rooms not recorded pay one `Option` check)         keyframe wanted → PLI path  │
//! writer thread: recv → WebmWriter (header room rewritten per new track) → file         ◀┘
//!                every 1 MiB: free space? size limit? → end → finish (duration, sizes), manifest
//! ```

mod depacketize;
mod ebml;
mod recorder;
mod store;
mod webm;
mod writer;

pub use depacketize::{
    Depacketized, OpusDepacketizer, RtpView, Unwrapper, Vp8Depacketizer, vp8_descriptor, vp8_keyframe_size,
};
pub use recorder::{RecorderAction, RoomRecorder, TRACKS_MAX, TrackOrigin};
pub use store::{RecordingInfo, RecordingState, RecordingStore, valid_file_name};
pub use webm::{Codec, MuxError, TRACKS_RESERVED_BYTES, TrackSpec, WebmWriter};
pub use writer::{RecordingHandle, StartError, free_bytes, now_unix_ms};

use bridgemesh_proto::RoomId;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

/// Where and how much the bridge records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingConfig {
    /// Where recordings are written (created if missing).
    pub directory: PathBuf,
    /// A recording is refused below this much free space on the directory's file system, and
    /// one in progress stops when the free space falls under it.
    pub free_bytes_min: u64,
    /// A recording stops when it reaches this length ...
    pub duration_max_s: u64,
    /// ... or this size.
    pub file_bytes_max: u64,
    /// Recordings in progress on this bridge at once.
    pub recordings_max: usize,
    /// Frames queued toward one recording's writer; past it the recording ends (see
    /// [`EndReason::WriterBehind`]) rather than the shard waiting.
    pub queue_frames_max: usize,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("recordings"),
            free_bytes_min: 1024 * 1024 * 1024,
            duration_max_s: 6 * 3600,
            file_bytes_max: 16 * 1024 * 1024 * 1024,
            recordings_max: 8,
            queue_frames_max: 4096,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordingConfigError {
    #[error("recording: the directory is empty")]
    NoDirectory,
    #[error("recording: {0} must be at least 1")]
    Zero(&'static str),
    #[error("recording: queue_frames_max must be at most 1000000")]
    QueueTooLong,
}

impl RecordingConfig {
    pub fn validate(&self) -> Result<(), RecordingConfigError> {
        if self.directory.as_os_str().is_empty() {
            return Err(RecordingConfigError::NoDirectory);
        }
        for (value, name) in [
            (self.duration_max_s, "duration_max_s"),
            (self.file_bytes_max, "file_bytes_max"),
            (self.recordings_max as u64, "recordings_max"),
            (self.queue_frames_max as u64, "queue_frames_max"),
        ] {
            if value == 0 {
                return Err(RecordingConfigError::Zero(name));
            }
        }
        if self.queue_frames_max > 1_000_000 {
            return Err(RecordingConfigError::QueueTooLong);
        }
        Ok(())
    }
}

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndReason {
    /// A moderator or the operator stopped it.
    Stopped,
    /// Everyone left the room (or the meeting ended, or the bridge is stopping).
    RoomClosed,
    DurationLimit,
    SizeLimit,
    /// The file system's free space fell under the configured minimum, or a write found it full.
    DiskFull,
    /// The writer could not keep up and a frame had to be dropped.
    WriterBehind,
    /// Writing failed for another reason (logged).
    WriteFailed,
}

/// What the shard and the writer thread share about one recording.
#[derive(Debug)]
pub struct RecordingShared {
    pub name: String,
    pub room: RoomId,
    pub started_at_unix_ms: u64,
    ended: Mutex<Option<EndReason>>,
    /// Frames dropped because the writer's queue was full.
    pub frames_dropped: AtomicU64,
    pub frames_written: AtomicU64,
    pub bytes_written: AtomicU64,
    /// The room required end-to-end encryption at some time during the recording: its video and
    /// audio frames are (partly) ciphertext that only holders of the passphrase can decrypt.
    pub encrypted: std::sync::atomic::AtomicBool,
}

impl RecordingShared {
    pub fn new(name: String, room: RoomId, started_at_unix_ms: u64) -> Self {
        Self {
            name,
            room,
            started_at_unix_ms,
            ended: Mutex::new(None),
            frames_dropped: AtomicU64::new(0),
            frames_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            encrypted: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Marks the recording over; the first reason given stays.
    pub fn end(&self, reason: EndReason) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended.get_or_insert(reason);
    }

    /// The writer cut the file short (a limit, a full disk, a failed write): that says more about
    /// the file than the stop or the room's end it may have overtaken in the queue.
    pub fn end_by_writer(&self, reason: EndReason) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if ended.is_none_or(|r| matches!(r, EndReason::Stopped | EndReason::RoomClosed)) {
            *ended = Some(reason);
        }
    }

    pub fn ended(&self) -> Option<EndReason> {
        *self.ended.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the shard sends a recording's writer.
#[derive(Debug)]
pub enum WriterInput {
    /// Declare track `number` (numbers come in order: 1, 2, ...) before its first frame.
    Track { number: u64, spec: TrackSpec },
    /// One frame at `at_ms` from the recording's start.
    Frame {
        track: u64,
        at_ms: u64,
        keyframe: bool,
        data: Vec<u8>,
    },
}

#[cfg(test)]
pub(crate) mod tests;
