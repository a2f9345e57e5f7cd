//! A WebM file whose tracks may appear while it is being written.
//!
//! Matroska declares every track in the `Tracks` element before the first `Cluster`, and a room's
//! participants join, share their screen and leave during a recording. The writer therefore keeps
//! room for `Tracks` at the head of the file ([`TRACKS_RESERVED_BYTES`], filled by a `Void`
//! element that readers skip) and rewrites it in place each time a track is added, before the
//! track's first block is written. Clusters are appended after that room as frames arrive. At
//! every moment the bytes on disk are a valid WebM file for the tracks declared so far (the
//! segment's size says "unknown" until [`WebmWriter::finish`] writes it with the duration).
//!
//! A header written once every track is known would need all of them up front; a segment
//! restarted at each new track would make one recording several segments, which most players do
//! not chain. Per-track files and a manifest would leave the synchronisation to the user.

use super::ebml::{self, id};
use std::io::{self, Seek, SeekFrom, Write};

/// Room kept at the head of the file for the `Tracks` element: about 300 track entries.
pub const TRACKS_RESERVED_BYTES: usize = 64 * 1024;

/// A cluster is closed when it spans this long (block timestamps are 16-bit offsets from it).
const CLUSTER_SPAN_MS: u64 = 5_000;
/// ... or holds this many bytes (clusters are built in memory).
const CLUSTER_BYTES_MAX: usize = 4 * 1024 * 1024;
/// A video keyframe starts a new cluster once the current one is this old, so a player seeks to
/// a cluster that can be decoded from its start.
const CLUSTER_KEYFRAME_SPAN_MS: u64 = 1_000;

/// Longest track name kept (a participant's display name and its source).
pub const TRACK_NAME_BYTES_MAX: usize = 96;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Vp8,
    Opus,
}

impl Codec {
    fn codec_id(self) -> &'static str {
        match self {
            Codec::Vp8 => "V_VP8",
            Codec::Opus => "A_OPUS",
        }
    }
}

/// A track as declared in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackSpec {
    pub codec: Codec,
    pub name: String,
    /// Video: the size of the first keyframe (VP8 keyframes carry it).
    pub width: u16,
    pub height: u16,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MuxError {
    #[error("no room left in the file's header for another track")]
    HeaderFull,
    #[error("track {0} was never added")]
    UnknownTrack(u64),
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub struct WebmWriter<W: Write + Seek> {
    out: W,
    /// Offsets in `out`: the segment's 8-byte size field, its first data byte, the duration's
    /// 8-byte float, the room kept for `Tracks`.
    segment_size_at: u64,
    segment_data_at: u64,
    duration_at: u64,
    tracks_at: u64,
    tracks: Vec<TrackSpec>,
    cluster: Vec<u8>,
    cluster_start_ms: Option<u64>,
    /// Bytes in `out` (the end of the file).
    len: u64,
    last_ms: u64,
    /// `last_ms` and `frames` as of the last cluster written.
    flushed_last_ms: u64,
    flushed_frames: u64,
    frames: u64,
}

impl<W: Write + Seek> WebmWriter<W> {
    /// Writes the EBML header, the segment's head with `title`, and the room for tracks.
    pub fn new(mut out: W, title: &str) -> io::Result<Self> {
        let mut head = Vec::with_capacity(TRACKS_RESERVED_BYTES + 256);
        ebml::put_master(&mut head, id::EBML, |h| {
            ebml::put_uint(h, id::EBML_VERSION, 1);
            ebml::put_uint(h, id::EBML_READ_VERSION, 1);
            ebml::put_uint(h, id::EBML_MAX_ID_LENGTH, 4);
            ebml::put_uint(h, id::EBML_MAX_SIZE_LENGTH, 8);
            ebml::put_str(h, id::DOC_TYPE, "webm");
            ebml::put_uint(h, id::DOC_TYPE_VERSION, 4);
            ebml::put_uint(h, id::DOC_TYPE_READ_VERSION, 2);
        });
        ebml::put_id(&mut head, id::SEGMENT);
        let segment_size_at = head.len() as u64;
        head.extend_from_slice(&ebml::UNKNOWN_SIZE_8);
        let segment_data_at = head.len() as u64;
        // Info, with the duration's float at a known place for `finish`.
        let mut info = Vec::new();
        ebml::put_uint(&mut info, id::TIMESTAMP_SCALE, 1_000_000);
        ebml::put_str(&mut info, id::MUXING_APP, "bridgemesh");
        ebml::put_str(&mut info, id::WRITING_APP, "bridgemesh");
        ebml::put_str(&mut info, id::TITLE, truncate(title, 256));
        ebml::put_id(&mut info, id::DURATION);
        ebml::put_size(&mut info, 8);
        let duration_in_info = info.len();
        info.extend_from_slice(&0f64.to_be_bytes());
        ebml::put_id(&mut head, id::INFO);
        ebml::put_size(&mut head, info.len() as u64);
        let duration_at = (head.len() + duration_in_info) as u64;
        head.extend_from_slice(&info);
        let tracks_at = head.len() as u64;
        ebml::put_void(&mut head, TRACKS_RESERVED_BYTES);
        out.write_all(&head)?;
        Ok(Self {
            out,
            segment_size_at,
            segment_data_at,
            duration_at,
            tracks_at,
            tracks: Vec::new(),
            cluster: Vec::new(),
            cluster_start_ms: None,
            len: head.len() as u64,
            last_ms: 0,
            flushed_last_ms: 0,
            flushed_frames: 0,
            frames: 0,
        })
    }

    /// Declares a track, rewriting the header in place; returns its number (1, 2, ...).
    pub fn add_track(&mut self, mut spec: TrackSpec) -> Result<u64, MuxError> {
        spec.name = truncate(&spec.name, TRACK_NAME_BYTES_MAX).to_owned();
        self.tracks.push(spec);
        let mut tracks = Vec::new();
        ebml::put_master(&mut tracks, id::TRACKS, |t| {
            for (index, spec) in self.tracks.iter().enumerate() {
                put_track_entry(t, index as u64 + 1, spec);
            }
        });
        // The Void after it needs two bytes at least.
        if tracks.len() + 2 > TRACKS_RESERVED_BYTES {
            self.tracks.pop();
            return Err(MuxError::HeaderFull);
        }
        let room = TRACKS_RESERVED_BYTES - tracks.len();
        ebml::put_void(&mut tracks, room);
        self.out.seek(SeekFrom::Start(self.tracks_at))?;
        self.out.write_all(&tracks)?;
        self.out.seek(SeekFrom::Start(self.len))?;
        Ok(self.tracks.len() as u64)
    }

    /// Appends one frame of `track` at `at_ms` from the recording's start.
    pub fn write_frame(
        &mut self,
        track: u64,
        at_ms: u64,
        keyframe: bool,
        data: &[u8],
    ) -> Result<(), MuxError> {
        let Some(spec) = track.checked_sub(1).and_then(|i| self.tracks.get(i as usize)) else {
            return Err(MuxError::UnknownTrack(track));
        };
        let video_keyframe = keyframe && spec.codec == Codec::Vp8;
        if let Some(start) = self.cluster_start_ms {
            let offset = at_ms as i64 - start as i64;
            let full = self.cluster.len() + data.len() > CLUSTER_BYTES_MAX;
            let old = at_ms.saturating_sub(start) >= CLUSTER_SPAN_MS;
            let seek_point = video_keyframe && at_ms.saturating_sub(start) >= CLUSTER_KEYFRAME_SPAN_MS;
            if full || old || seek_point || offset < i16::MIN as i64 {
                self.flush_cluster()?;
            }
        }
        let start = *self.cluster_start_ms.get_or_insert_with(|| {
            ebml::put_uint(&mut self.cluster, id::TIMESTAMP, at_ms);
            at_ms
        });
        let offset = (at_ms as i64 - start as i64) as i16;
        ebml::put_id(&mut self.cluster, id::SIMPLE_BLOCK);
        // Track number (a variable-length integer), 16-bit time offset, flags.
        let mut number = Vec::with_capacity(2);
        ebml::put_size(&mut number, track);
        ebml::put_size(&mut self.cluster, (number.len() + 3 + data.len()) as u64);
        self.cluster.extend_from_slice(&number);
        self.cluster.extend_from_slice(&offset.to_be_bytes());
        self.cluster.push(if keyframe { 0x80 } else { 0x00 });
        self.cluster.extend_from_slice(data);
        self.last_ms = self.last_ms.max(at_ms);
        self.frames += 1;
        Ok(())
    }

    /// Writes the open cluster to the file. When that fails the cluster is given up (its frames
    /// no longer count) and the file ends, as far as [`WebmWriter::len`] says, before it.
    pub fn flush_cluster(&mut self) -> io::Result<()> {
        if self.cluster_start_ms.take().is_none() {
            return Ok(());
        }
        let mut head = Vec::with_capacity(12);
        ebml::put_id(&mut head, id::CLUSTER);
        ebml::put_size(&mut head, self.cluster.len() as u64);
        let written = self
            .out
            .write_all(&head)
            .and_then(|()| self.out.write_all(&self.cluster));
        if let Err(err) = written {
            self.cluster.clear();
            self.last_ms = self.flushed_last_ms;
            self.frames = self.flushed_frames;
            // Back to where the file ends, for the header's patches.
            let _ = self.out.seek(SeekFrom::Start(self.len));
            return Err(err);
        }
        self.len += (head.len() + self.cluster.len()) as u64;
        self.cluster.clear();
        self.flushed_last_ms = self.last_ms;
        self.flushed_frames = self.frames;
        Ok(())
    }

    /// Bytes in the file, and in the cluster not written yet.
    pub fn len(&self) -> u64 {
        self.len + self.cluster.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn tracks(&self) -> &[TrackSpec] {
        &self.tracks
    }

    /// Timestamp of the latest frame, in ms from the start.
    pub fn last_ms(&self) -> u64 {
        self.last_ms
    }

    /// Writes the last cluster, the duration and the segment's size; gives the output back. When
    /// the last cluster cannot be written (the disk is full), the file ends with the one before:
    /// the header is still patched in place, which needs no new space, and the caller cuts the
    /// file at [`Finished::len`] (a cluster may be half written past it).
    pub fn finish(mut self) -> io::Result<Finished<W>> {
        let lost_cluster = self.flush_cluster().err();
        self.out.seek(SeekFrom::Start(self.duration_at))?;
        self.out.write_all(&(self.last_ms as f64).to_be_bytes())?;
        let mut size = Vec::with_capacity(8);
        ebml::put_size_fixed(&mut size, self.len - self.segment_data_at, 8);
        self.out.seek(SeekFrom::Start(self.segment_size_at))?;
        self.out.write_all(&size)?;
        self.out.seek(SeekFrom::Start(self.len))?;
        self.out.flush()?;
        Ok(Finished {
            out: self.out,
            len: self.len,
            duration_ms: self.last_ms,
            frames: self.frames,
            lost_cluster,
        })
    }
}

/// A finished file.
pub struct Finished<W> {
    pub out: W,
    /// Where the file ends.
    pub len: u64,
    pub duration_ms: u64,
    /// Frames in it.
    pub frames: u64,
    /// Why the last cluster is not in it.
    pub lost_cluster: Option<io::Error>,
}

fn put_track_entry(out: &mut Vec<u8>, number: u64, spec: &TrackSpec) {
    ebml::put_master(out, id::TRACK_ENTRY, |t| {
        ebml::put_uint(t, id::TRACK_NUMBER, number);
        ebml::put_uint(t, id::TRACK_UID, number);
        ebml::put_uint(t, id::FLAG_LACING, 0);
        ebml::put_str(t, id::NAME, &spec.name);
        ebml::put_str(t, id::CODEC_ID, spec.codec.codec_id());
        match spec.codec {
            Codec::Vp8 => {
                ebml::put_uint(t, id::TRACK_TYPE, 1);
                ebml::put_master(t, id::VIDEO, |v| {
                    ebml::put_uint(v, id::PIXEL_WIDTH, u64::from(spec.width.max(1)));
                    ebml::put_uint(v, id::PIXEL_HEIGHT, u64::from(spec.height.max(1)));
                });
            }
            Codec::Opus => {
                ebml::put_uint(t, id::TRACK_TYPE, 2);
                ebml::put_bytes(t, id::CODEC_PRIVATE, &opus_head());
                ebml::put_uint(t, id::CODEC_DELAY, 0);
                // 80 ms, what the Matroska spec recommends for Opus.
                ebml::put_uint(t, id::SEEK_PRE_ROLL, 80_000_000);
                ebml::put_master(t, id::AUDIO, |a| {
                    ebml::put_float(a, id::SAMPLING_FREQUENCY, 48_000.0);
                    ebml::put_uint(a, id::CHANNELS, 2);
                });
            }
        }
    });
}

/// The identification header Opus in Matroska carries as CodecPrivate (RFC 7845 §5.1): WebRTC's
/// Opus is 48 kHz stereo (`opus/48000/2`); RTP carries no pre-skip, so none is declared.
fn opus_head() -> [u8; 19] {
    let mut head = [0u8; 19];
    head[..8].copy_from_slice(b"OpusHead");
    head[8] = 1; // version
    head[9] = 2; // channels
    head[12..16].copy_from_slice(&48_000u32.to_le_bytes());
    head
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn vp8(name: &str) -> TrackSpec {
        TrackSpec {
            codec: Codec::Vp8,
            name: name.into(),
            width: 320,
            height: 240,
        }
    }

    #[test]
    fn adding_a_track_keeps_the_clusters_where_they_are() {
        let mut writer = WebmWriter::new(Cursor::new(Vec::new()), "room").unwrap();
        let first = writer.add_track(vp8("a")).unwrap();
        writer.write_frame(first, 0, true, &[1; 100]).unwrap();
        writer.flush_cluster().unwrap();
        let before = writer.len();
        let second = writer.add_track(vp8("b")).unwrap();
        assert_eq!((first, second), (1, 2));
        assert_eq!(writer.len(), before, "the header was rewritten in its room");
        writer.write_frame(second, 40, true, &[2; 100]).unwrap();
        let bytes = writer.finish().unwrap().out.into_inner();
        // Both track entries are in the header: their names sit before the first cluster.
        let cluster = bytes
            .windows(4)
            .position(|w| w == [0x1F, 0x43, 0xB6, 0x75])
            .unwrap();
        assert!(cluster > TRACKS_RESERVED_BYTES);
        assert!(bytes[..cluster].windows(3).any(|w| w == [0x53, 0x6E, 0x81]));
    }

    #[test]
    fn frames_of_unknown_tracks_are_refused() {
        let mut writer = WebmWriter::new(Cursor::new(Vec::new()), "room").unwrap();
        assert!(matches!(
            writer.write_frame(1, 0, true, &[0]),
            Err(MuxError::UnknownTrack(1))
        ));
    }

    #[test]
    fn the_header_refuses_tracks_past_its_room() {
        let mut writer = WebmWriter::new(Cursor::new(Vec::new()), "room").unwrap();
        let name = "n".repeat(TRACK_NAME_BYTES_MAX);
        let mut added = 0;
        loop {
            match writer.add_track(vp8(&name)) {
                Ok(_) => added += 1,
                Err(MuxError::HeaderFull) => break,
                Err(err) => panic!("{err}"),
            }
        }
        assert!(added >= 200, "only {added} tracks fit");
        assert_eq!(writer.tracks().len(), added);
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
