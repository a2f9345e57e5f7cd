//! One room's recording on the shard that owns the room: a sans-IO state machine fed the room's
//! forwarded packets (local publishers and streams from cascade links alike) that depacketizes
//! them into frames and hands those to the recording's writer thread through a bounded channel.
//! It never blocks: when the writer falls behind, the frame is dropped, counted, and the
//! recording ends cleanly (the writer finalizes what it has).

use super::depacketize::{Depacketized, OpusDepacketizer, RtpView, Vp8Depacketizer, vp8_keyframe_size};
use super::webm::{Codec, TrackSpec};
use super::{EndReason, RecordingShared, WriterInput};
use crate::demux::ParticipantKey;
use bridgemesh_proto::signaling::MediaSource;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// Tracks one recording takes at most (each (publisher, source, SSRC) is one); the header has
/// room for more.
pub const TRACKS_MAX: usize = 256;

/// Who published a stream, as the track's name in the file says it.
#[derive(Debug, Clone)]
pub struct TrackOrigin {
    pub display_name: String,
    /// The codec's MIME type as negotiated (`video/VP8`, `audio/opus`, ...).
    pub mime_type: String,
    pub clock_rate: u32,
}

enum Depacketizer {
    Vp8(Vp8Depacketizer),
    Opus(OpusDepacketizer),
    /// A codec the recorder does not write (H.264, VP9, AV1): its packets are ignored.
    Unsupported,
}

struct Track {
    depacketizer: Depacketizer,
    name: String,
    clock_rate: u64,
    /// Its number in the file once declared (at its first frame: a keyframe for video).
    number: Option<u64>,
    /// The first frame's extended RTP timestamp and its time from the recording's start.
    origin: Option<(u64, u64)>,
}

/// What [`RoomRecorder::on_packet`] asks of the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecorderAction {
    Nothing,
    /// Ask the publisher for a keyframe of this stream (through the usual, rate-limited path).
    RequestKeyframe,
    /// The recording is over (the writer stopped or fell behind): drop the recorder.
    Ended,
}

pub struct RoomRecorder {
    pub(crate) shared: Arc<RecordingShared>,
    sink: SyncSender<WriterInput>,
    started_at: Instant,
    duration_max: Duration,
    tracks: HashMap<(ParticipantKey, MediaSource, u32), Track>,
    next_number: u64,
}

impl RoomRecorder {
    pub fn new(
        shared: Arc<RecordingShared>,
        sink: SyncSender<WriterInput>,
        started_at: Instant,
        duration_max: Duration,
    ) -> Self {
        Self {
            shared,
            sink,
            started_at,
            duration_max,
            tracks: HashMap::new(),
            next_number: 1,
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// When the recording must end for its length, for the shard's timer.
    pub fn deadline(&self) -> Instant {
        self.started_at + self.duration_max
    }

    /// Whether the recording is over at `now`: its writer ended it, or its time is up.
    pub fn poll_end(&self, now: Instant) -> Option<EndReason> {
        if let Some(reason) = self.shared.ended() {
            return Some(reason);
        }
        (now >= self.deadline()).then_some(EndReason::DurationLimit)
    }

    /// One packet the room forwarded. `origin` is asked only for a stream not seen before.
    pub fn on_packet(
        &mut self,
        now: Instant,
        publisher: ParticipantKey,
        source: MediaSource,
        packet: &[u8],
        origin: impl FnOnce() -> Option<TrackOrigin>,
    ) -> RecorderAction {
        let Some(view) = RtpView::parse(packet) else {
            return RecorderAction::Nothing;
        };
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let key = (publisher, source, ssrc);
        if !self.tracks.contains_key(&key) {
            if self.tracks.len() >= TRACKS_MAX {
                return RecorderAction::Nothing;
            }
            let Some(origin) = origin() else {
                return RecorderAction::Nothing;
            };
            let depacketizer = match origin.mime_type.to_ascii_lowercase().as_str() {
                "video/vp8" => Depacketizer::Vp8(Vp8Depacketizer::default()),
                "audio/opus" => Depacketizer::Opus(OpusDepacketizer::default()),
                _ => Depacketizer::Unsupported,
            };
            let source_name = match source {
                MediaSource::Microphone => "microphone",
                MediaSource::Camera => "camera",
                MediaSource::Screen => "screen",
            };
            self.tracks.insert(
                key,
                Track {
                    depacketizer,
                    name: format!("{} ({source_name})", origin.display_name),
                    clock_rate: u64::from(origin.clock_rate.max(1)),
                    number: None,
                    origin: None,
                },
            );
        }
        let track = self.tracks.get_mut(&key).expect("inserted above");
        let (frame, wants_keyframe) = match &mut track.depacketizer {
            Depacketizer::Vp8(d) => {
                let frame = match d.push(view) {
                    Depacketized::Frame {
                        timestamp,
                        keyframe,
                        data,
                    } => Some((timestamp, keyframe, data.to_vec())),
                    Depacketized::Nothing => None,
                };
                let wants = d.wants_keyframe();
                if wants {
                    d.keyframe_requested();
                }
                (frame, wants)
            }
            Depacketizer::Opus(d) => match d.push(view) {
                Depacketized::Frame { timestamp, data, .. } => {
                    (Some((timestamp, true, data.to_vec())), false)
                }
                Depacketized::Nothing => (None, false),
            },
            Depacketizer::Unsupported => (None, false),
        };
        let Some((timestamp, keyframe, data)) = frame else {
            return if wants_keyframe {
                RecorderAction::RequestKeyframe
            } else {
                RecorderAction::Nothing
            };
        };
        let number = match track.number {
            Some(number) => number,
            None => {
                let (codec, (width, height)) = match track.depacketizer {
                    Depacketizer::Vp8(_) => (Codec::Vp8, vp8_keyframe_size(&data).unwrap_or((0, 0))),
                    _ => (Codec::Opus, (0, 0)),
                };
                let number = self.next_number;
                let spec = TrackSpec {
                    codec,
                    name: track.name.clone(),
                    width,
                    height,
                };
                if !send(&self.sink, &self.shared, WriterInput::Track { number, spec }) {
                    return RecorderAction::Ended;
                }
                self.next_number += 1;
                track.number = Some(number);
                number
            }
        };
        let (first_timestamp, first_ms) = *track.origin.get_or_insert_with(|| {
            let since_start = now.saturating_duration_since(self.started_at).as_millis() as u64;
            (timestamp, since_start)
        });
        // A timestamp before the track's first (a reordered frame) is put at its start.
        let at_ms = first_ms + timestamp.saturating_sub(first_timestamp) * 1000 / track.clock_rate;
        let input = WriterInput::Frame {
            track: number,
            at_ms,
            keyframe,
            data,
        };
        if !send(&self.sink, &self.shared, input) {
            return RecorderAction::Ended;
        }
        if wants_keyframe {
            RecorderAction::RequestKeyframe
        } else {
            RecorderAction::Nothing
        }
    }
}

impl Drop for RoomRecorder {
    /// A recorder dropped without a reason given went with its room.
    fn drop(&mut self) {
        self.shared.end(EndReason::RoomClosed);
    }
}

/// Queues `input` for the writer without waiting; `false` when the recording is over (the
/// writer stopped, or is so far behind that the frame is dropped and the recording ended).
fn send(sink: &SyncSender<WriterInput>, shared: &RecordingShared, input: WriterInput) -> bool {
    match sink.try_send(input) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            shared
                .frames_dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            shared.end(EndReason::WriterBehind);
            false
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}
