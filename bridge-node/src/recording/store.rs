//! The recordings directory: one `NAME.webm` per recording and its manifest `NAME.json` (room,
//! times, tracks, how it ended), written when it starts and again when it ends.

use super::{EndReason, RecordingShared};
use bridgemesh_proto::RoomId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Recordings listed at most (the newest).
pub const LIST_MAX: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    Recording,
    Complete,
    /// Its manifest says it was recording, but no writer of this process has it: the bridge
    /// stopped without finishing it (the file holds what was written; its duration is unset).
    Interrupted,
}

/// One track of a recording, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    pub number: u64,
    pub name: String,
    /// `V_VP8` or `A_OPUS`.
    pub codec: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u16>,
}

/// A recording's manifest, and what the admin API lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingInfo {
    /// The file's name in the directory (`NAME.webm`).
    pub file: String,
    pub room: RoomId,
    pub state: RecordingState,
    pub started_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    pub duration_ms: u64,
    pub bytes: u64,
    pub frames: u64,
    pub frames_dropped: u64,
    pub tracks: Vec<TrackInfo>,
    /// The room was end-to-end encrypted while recorded: the file holds ciphertext
    /// (`docs/e2ee.md`), which players cannot decode.
    #[serde(default)]
    pub encrypted: bool,
}

/// Whether `name` is a recording's file name this bridge could have made: no path, no hidden
/// file, `.webm` (what a download may ask for).
pub fn valid_file_name(name: &str) -> bool {
    name.len() <= 200
        && name.ends_with(".webm")
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The directory and the recordings in progress.
#[derive(Debug)]
pub struct RecordingStore {
    pub(crate) config: super::RecordingConfig,
    pub(crate) active: Mutex<HashMap<String, Arc<RecordingShared>>>,
}

impl RecordingStore {
    pub fn new(config: super::RecordingConfig) -> Self {
        Self {
            config,
            active: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &super::RecordingConfig {
        &self.config
    }

    pub fn directory(&self) -> &Path {
        &self.config.directory
    }

    /// The file of `name`, when it names a recording there.
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        valid_file_name(name).then(|| self.config.directory.join(name))
    }

    pub fn active_count(&self) -> usize {
        self.active.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The recordings in the directory, newest first (at most [`LIST_MAX`]).
    pub fn list(&self) -> io::Result<Vec<RecordingInfo>> {
        let entries = match std::fs::read_dir(&self.config.directory) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut list = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Ok(text) = std::fs::read(&path) else { continue };
            let Ok(mut info) = serde_json::from_slice::<RecordingInfo>(&text) else {
                continue;
            };
            if !valid_file_name(&info.file) {
                continue;
            }
            if let Some(shared) = active.get(&info.file) {
                info.bytes = shared.bytes_written.load(std::sync::atomic::Ordering::Relaxed);
                info.frames = shared.frames_written.load(std::sync::atomic::Ordering::Relaxed);
                info.encrypted |= shared.encrypted.load(std::sync::atomic::Ordering::Relaxed);
            } else if info.state == RecordingState::Recording {
                info.state = RecordingState::Interrupted;
                info.bytes = std::fs::metadata(self.config.directory.join(&info.file))
                    .map(|m| m.len())
                    .unwrap_or(0);
            }
            list.push(info);
        }
        list.sort_by(|a, b| b.started_at_ms.cmp(&a.started_at_ms).then(a.file.cmp(&b.file)));
        list.truncate(LIST_MAX);
        Ok(list)
    }
}

/// Room a manifest takes on disk from the start: its final version overwrites it in place, which
/// needs no new space when the recording ended on a full disk.
pub const MANIFEST_RESERVED_BYTES: usize = 8 * 1024;

/// Writes `info` as `NAME.json` beside its file, padded with spaces (still JSON) to
/// [`MANIFEST_RESERVED_BYTES`]. The first version is written through a temporary file and a
/// rename, so a reader never sees half of it; later ones overwrite it in place when they fit.
pub(crate) fn write_manifest(directory: &Path, info: &RecordingInfo, first: bool) -> io::Result<()> {
    use std::io::Write as _;
    let stem = info.file.trim_end_matches(".webm");
    let path = directory.join(format!("{stem}.json"));
    let mut bytes = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
    if bytes.len() < MANIFEST_RESERVED_BYTES {
        bytes.resize(MANIFEST_RESERVED_BYTES, b' ');
        if !first {
            let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
            file.write_all(&bytes)?;
            return file.sync_all();
        }
    }
    let temporary = directory.join(format!(".{stem}.json.tmp"));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

/// A file name for a recording of `room` started at `unix_ms`: the room, the UTC time, and a
/// random suffix so two recordings of one second do not collide.
pub(crate) fn file_name(room: &RoomId, unix_ms: u64, suffix: u32) -> String {
    let room: String = room
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let (year, month, day, hour, minute, second) = utc(unix_ms / 1000);
    format!("{room}-{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z-{suffix:08x}.webm")
}

/// The UTC calendar time of a Unix time (Howard Hinnant's days-to-civil).
fn utc(unix_s: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = unix_s / 86_400;
    let rest = unix_s % 86_400;
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year as u64,
        month as u64,
        day as u64,
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_say_the_room_and_the_utc_time() {
        let room = RoomId::new("team-sync").unwrap();
        // 2026-12-08 00:01:02 UTC
        assert_eq!(
            file_name(&room, 1_796_688_062_000, 0xAB),
            "team-sync-20261208T000102Z-000000ab.webm"
        );
        assert_eq!(utc(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc(951_782_400), (2000, 2, 29, 0, 0, 0));
    }

    #[test]
    fn only_plain_webm_names_are_files() {
        assert!(valid_file_name("room-20261208T000102Z-000000ab.webm"));
        for bad in [
            "../x.webm",
            "a/b.webm",
            ".hidden.webm",
            "x.json",
            "x webm.webm",
            "",
        ] {
            assert!(!valid_file_name(bad), "{bad}");
        }
    }
}
