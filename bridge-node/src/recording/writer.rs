//! A recording's writer: its own thread, fed frames through a bounded channel, writing the WebM
//! file and watching the limits (size, free space). It ends when the shard drops its side of the
//! channel (stopped, room closed, duration reached) or by itself (disk full, size limit, a write
//! error), and always finishes the file: the last cluster, the duration and the segment's size.

use super::store::{RecordingInfo, RecordingState, RecordingStore, TrackInfo, file_name, write_manifest};
use super::webm::{Codec, MuxError, WebmWriter};
use super::{EndReason, RecordingShared, WriterInput};
use bridgemesh_proto::RoomId;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Free space is looked at again after this many bytes written.
const FREE_SPACE_CHECK_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("{free} bytes free for recordings, fewer than the {min} required")]
    LowDiskSpace { free: u64, min: u64 },
    #[error("already {0} recordings in progress on this bridge")]
    TooMany(usize),
    #[error("cannot write in the recordings directory: {0}")]
    Io(#[from] io::Error),
}

/// A started recording: what the shard's recorder needs.
pub struct RecordingHandle {
    pub shared: Arc<RecordingShared>,
    pub sink: SyncSender<WriterInput>,
    /// The configured longest recording.
    pub duration_max: std::time::Duration,
}

impl std::fmt::Debug for RecordingHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingHandle")
            .field("name", &self.shared.name)
            .finish()
    }
}

/// Free bytes for an unprivileged writer on the file system holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

impl RecordingStore {
    /// Starts recording `room`: checks the count and the free space, creates the file and its
    /// manifest, and starts the writer thread.
    pub fn start(self: &Arc<Self>, room: &RoomId, unix_ms: u64) -> Result<RecordingHandle, StartError> {
        let config = &self.config;
        {
            let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
            if active.len() >= config.recordings_max {
                return Err(StartError::TooMany(active.len()));
            }
        }
        std::fs::create_dir_all(&config.directory)?;
        let free = free_bytes(&config.directory)?;
        if free < config.free_bytes_min {
            return Err(StartError::LowDiskSpace {
                free,
                min: config.free_bytes_min,
            });
        }
        let (name, file) = loop {
            let name = file_name(room, unix_ms, rand::random());
            match File::options()
                .write(true)
                .create_new(true)
                .open(config.directory.join(&name))
            {
                Ok(file) => break (name, file),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err.into()),
            }
        };
        let shared = Arc::new(RecordingShared::new(name.clone(), room.clone(), unix_ms));
        let muxer = WebmWriter::new(file, room.as_str())?;
        let info = RecordingInfo {
            file: name.clone(),
            room: room.clone(),
            state: RecordingState::Recording,
            started_at_ms: unix_ms,
            ended_at_ms: None,
            end_reason: None,
            duration_ms: 0,
            bytes: muxer.len(),
            frames: 0,
            frames_dropped: 0,
            tracks: Vec::new(),
            encrypted: false,
        };
        write_manifest(&config.directory, &info, true)?;
        let (sink, frames) = sync_channel(config.queue_frames_max);
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), shared.clone());
        let store = self.clone();
        let thread_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("recording".into())
            .spawn(move || store.write(muxer, frames, &thread_shared, info));
        if let Err(err) = spawned {
            self.active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
            return Err(err.into());
        }
        tracing::info!(recording = %name, %room, "recording started");
        Ok(RecordingHandle {
            shared,
            sink,
            duration_max: std::time::Duration::from_secs(config.duration_max_s),
        })
    }

    fn write(
        &self,
        mut muxer: WebmWriter<File>,
        frames: Receiver<WriterInput>,
        shared: &RecordingShared,
        mut info: RecordingInfo,
    ) {
        let config = &self.config;
        // The shard's track numbers to the file's (they differ once a track was refused).
        let mut numbers = std::collections::HashMap::new();
        let mut checked_at = 0u64;
        // Until the shard lets go of its side (or the writer ends it).
        while let Ok(input) = frames.recv() {
            let written = match input {
                WriterInput::Track { number, spec } => {
                    let (codec, width, height) = match spec.codec {
                        Codec::Vp8 => ("V_VP8", Some(spec.width), Some(spec.height)),
                        Codec::Opus => ("A_OPUS", None, None),
                    };
                    let name = spec.name.clone();
                    let added = muxer.add_track(spec);
                    if let Ok(actual) = added {
                        numbers.insert(number, actual);
                        info.tracks.push(TrackInfo {
                            number: actual,
                            name,
                            codec: codec.into(),
                            width,
                            height,
                        });
                    }
                    added.map(|_| ())
                }
                WriterInput::Frame {
                    track,
                    at_ms,
                    keyframe,
                    data,
                } => {
                    let Some(&actual) = numbers.get(&track) else {
                        continue;
                    };
                    muxer.write_frame(actual, at_ms, keyframe, &data)
                }
            };
            match written {
                Ok(()) => {}
                Err(MuxError::HeaderFull) => {
                    tracing::warn!(recording = %shared.name, "no room for another track")
                }
                Err(MuxError::UnknownTrack(_)) => {}
                Err(MuxError::Io(err)) => {
                    shared.end_by_writer(end_reason_of(&err));
                    tracing::warn!(recording = %shared.name, %err, "recording write failed");
                    break;
                }
            }
            shared.frames_written.store(muxer.frames(), Ordering::Relaxed);
            shared.bytes_written.store(muxer.len(), Ordering::Relaxed);
            if muxer.len() >= config.file_bytes_max {
                shared.end_by_writer(EndReason::SizeLimit);
                break;
            }
            if muxer.len() >= checked_at + FREE_SPACE_CHECK_BYTES {
                checked_at = muxer.len();
                match free_bytes(&config.directory) {
                    Ok(free) if free < config.free_bytes_min => {
                        shared.end_by_writer(EndReason::DiskFull);
                        break;
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(%err, "free space of the recordings directory unknown"),
                }
            }
        }
        // The shard's side may still be open (the writer ended it): dropping the receiver makes
        // its next send fail, and it ends the recording there.
        drop(frames);
        let mut frames_written = muxer.frames();
        let mut duration_ms = muxer.last_ms();
        let bytes = match muxer.finish() {
            Ok(finished) => {
                if let Some(err) = &finished.lost_cluster {
                    shared.end_by_writer(end_reason_of(err));
                    tracing::warn!(recording = %shared.name, %err, "the last cluster was not written");
                }
                duration_ms = finished.duration_ms;
                frames_written = finished.frames;
                // Cut what a failed write left past the last whole cluster; sync what is kept.
                let file = finished.out;
                let _ = file.set_len(finished.len);
                if let Err(err) = file.sync_all() {
                    tracing::warn!(recording = %shared.name, %err, "recording not synced");
                }
                finished.len
            }
            Err(err) => {
                shared.end_by_writer(end_reason_of(&err));
                tracing::warn!(recording = %shared.name, %err, "recording not finished cleanly");
                std::fs::metadata(config.directory.join(&info.file))
                    .map(|m| m.len())
                    .unwrap_or(0)
            }
        };
        shared.end(EndReason::Stopped);
        let reason = shared.ended();
        info.state = RecordingState::Complete;
        info.ended_at_ms = Some(now_unix_ms());
        info.end_reason = reason;
        info.duration_ms = duration_ms;
        info.bytes = bytes;
        info.frames = frames_written;
        info.frames_dropped = shared.frames_dropped.load(Ordering::Relaxed);
        info.encrypted = shared.encrypted.load(Ordering::Relaxed);
        if let Err(err) = write_manifest(&config.directory, &info, false) {
            tracing::warn!(recording = %shared.name, %err, "recording manifest not written");
        }
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&shared.name);
        tracing::info!(recording = %shared.name, ?reason, bytes, duration_ms, "recording finished");
    }
}

fn end_reason_of(err: &io::Error) -> EndReason {
    if err.kind() == io::ErrorKind::StorageFull || err.kind() == io::ErrorKind::QuotaExceeded {
        EndReason::DiskFull
    } else {
        EndReason::WriteFailed
    }
}

/// The wall clock in Unix milliseconds.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
