//! A room's recording on the shard that owns it ([`crate::recording`]): moderators' and the
//! operator's start and stop, the recorder fed by `deliver`, the indicator every participant sees
//! (those of other bridges through the cascade), the timer that ends it.

use super::*;
use crate::recording::{EndReason, RecorderAction, RecordingHandle, RoomRecorder, TrackOrigin};
use std::collections::BTreeSet;

/// How often a recorded room's timer looks whether the writer ended the recording.
const RECORDING_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Keyframe requests a recording keeps pending at most (one per stream).
const RECORDING_KEYFRAMES_MAX: usize = 64;

/// Who asked for a start or a stop, and where the answer goes.
#[derive(Debug, Default)]
pub struct RecordingRequester {
    /// A moderator's session (it is told of a refusal), or `None` for the operator.
    pub by: Option<ParticipantKey>,
    /// The admin API waiting for the answer: the recording's file name, or why not.
    pub reply: Option<tokio::sync::oneshot::Sender<Result<String, (ErrorCode, String)>>>,
}

impl RecordingRequester {
    fn answer(self, shard: &mut Shard, result: Result<String, (ErrorCode, String)>) {
        if let (Some(key), Err((code, message))) = (self.by, &result) {
            shard.outputs.push_back(ShardOutput::ToClient {
                key,
                message: ServerMessage::Error {
                    code: *code,
                    message: message.clone(),
                },
            });
        }
        if let Some(reply) = self.reply {
            let _ = reply.send(result);
        }
    }
}

#[derive(Debug)]
pub enum RecordingInput {
    Start {
        room: RoomId,
        requester: RecordingRequester,
    },
    Stop {
        room: RoomId,
        requester: RecordingRequester,
    },
    /// The driver started the writer the shard asked for ...
    Started {
        room: RoomId,
        handle: RecordingHandle,
        requester: RecordingRequester,
    },
    /// ... or could not (`not_found`: this bridge does not record; `no_capacity`: low disk
    /// space, too many recordings).
    Refused {
        room: RoomId,
        code: ErrorCode,
        message: String,
        requester: RecordingRequester,
    },
}

/// A room's recording state on its shard.
#[derive(Default)]
pub struct RoomRecordingState {
    pub(crate) recorder: Option<RoomRecording>,
    /// A start is with the driver.
    starting: bool,
    /// Links whose bridge records the room.
    elsewhere: BTreeSet<LinkIndex>,
}

impl RoomRecordingState {
    /// Whether the room's participants are shown the indicator.
    pub fn active(&self) -> bool {
        self.recorder.is_some() || !self.elsewhere.is_empty()
    }
}

pub struct RoomRecording {
    recorder: RoomRecorder,
    keyframes: Vec<(ParticipantKey, MediaSource)>,
    ended: bool,
    next_check: Instant,
}

impl RoomRecording {
    /// One forwarded packet of the room (`deliver`): the track's origin is looked up only for a
    /// stream the recorder has not seen.
    pub(crate) fn on_packet(
        &mut self,
        now: Instant,
        publisher: ParticipantKey,
        source: MediaSource,
        packet: &[u8],
        participants: &BTreeMap<ParticipantKey, Participant>,
        cascade: &RoomCascade,
    ) {
        if self.ended {
            return;
        }
        let origin = || track_origin(participants, cascade, publisher, source);
        match self.recorder.on_packet(now, publisher, source, packet, origin) {
            RecorderAction::Nothing => {}
            RecorderAction::RequestKeyframe => {
                if !self.keyframes.contains(&(publisher, source))
                    && self.keyframes.len() < RECORDING_KEYFRAMES_MAX
                {
                    self.keyframes.push((publisher, source));
                }
                self.next_check = now;
            }
            RecorderAction::Ended => {
                self.ended = true;
                self.next_check = now;
            }
        }
    }

    pub(super) fn mark_encrypted(&self) {
        self.recorder
            .shared
            .encrypted
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn due(&self) -> Instant {
        self.next_check.min(self.recorder.deadline())
    }
}

fn track_origin(
    participants: &BTreeMap<ParticipantKey, Participant>,
    cascade: &RoomCascade,
    publisher: ParticipantKey,
    source: MediaSource,
) -> Option<TrackOrigin> {
    if let Some(participant) = participants.get(&publisher) {
        let codec = participant.slot(source)?.track.as_ref()?.codec.as_ref()?;
        return Some(TrackOrigin {
            display_name: participant.display_name.clone(),
            mime_type: codec.mime_type.clone(),
            clock_rate: codec.clock_rate,
        });
    }
    let remote = cascade.remote.get(&publisher)?;
    let stream = remote.streams.get(&source)?;
    Some(TrackOrigin {
        display_name: remote.info.display_name.clone(),
        mime_type: stream.codec.mime_type.clone(),
        clock_rate: stream.codec.clock_rate,
    })
}

impl Shard {
    pub(super) fn handle_recording(&mut self, now: Instant, input: RecordingInput) {
        match input {
            RecordingInput::Start { room, requester } => self.start_recording(&room, requester),
            RecordingInput::Stop { room, requester } => {
                let stopped = self.stop_recording(&room, EndReason::Stopped);
                let result = stopped.ok_or_else(|| {
                    (
                        ErrorCode::Conflict,
                        format!("room {room} is not being recorded on this bridge"),
                    )
                });
                requester.answer(self, result);
            }
            RecordingInput::Started {
                room,
                handle,
                requester,
            } => {
                let duration_max = handle.duration_max;
                let Some(state) = self.rooms.get_mut(&room) else {
                    // The room closed meanwhile: dropping the handle finishes an empty file.
                    handle.shared.end(EndReason::RoomClosed);
                    requester.answer(self, Err((ErrorCode::NotFound, format!("room {room} closed"))));
                    return;
                };
                state.recording.starting = false;
                let name = handle.shared.name.clone();
                state.recording.recorder = Some(RoomRecording {
                    recorder: RoomRecorder::new(handle.shared, handle.sink, now, duration_max),
                    keyframes: Vec::new(),
                    ended: false,
                    next_check: now + RECORDING_CHECK_INTERVAL,
                });
                state.note_encrypted_recording();
                self.tell_peers(
                    &room,
                    LinkMessage::Recording {
                        room: room.clone(),
                        active: true,
                    },
                );
                self.show_recording(&room);
                // Remote streams nobody here watches must cross the link too now.
                self.refresh_demand(&room);
                requester.answer(self, Ok(name));
            }
            RecordingInput::Refused {
                room,
                code,
                message,
                requester,
            } => {
                if let Some(state) = self.rooms.get_mut(&room) {
                    state.recording.starting = false;
                }
                requester.answer(self, Err((code, message)));
            }
        }
    }

    fn start_recording(&mut self, room_id: &RoomId, requester: RecordingRequester) {
        let refusal = match self.rooms.get_mut(room_id) {
            None => Some((
                ErrorCode::NotFound,
                format!("room {room_id} is not on this bridge"),
            )),
            Some(room) if room.participants.is_empty() => Some((
                ErrorCode::NotFound,
                format!("room {room_id} has no participant on this bridge"),
            )),
            Some(room) if room.recording.recorder.is_some() || room.recording.starting => Some((
                ErrorCode::Conflict,
                format!("room {room_id} is already being recorded"),
            )),
            Some(room) if !room.recording.elsewhere.is_empty() => Some((
                ErrorCode::Conflict,
                format!("room {room_id} is already being recorded by another bridge"),
            )),
            Some(room) => {
                room.recording.starting = true;
                None
            }
        };
        match refusal {
            Some(refusal) => requester.answer(self, Err(refusal)),
            None => self.outputs.push_back(ShardOutput::StartRecording {
                room: room_id.clone(),
                requester,
            }),
        }
    }

    /// Ends the room's recording here (the writer finishes the file); its name, if there was one.
    pub(super) fn stop_recording(&mut self, room_id: &RoomId, reason: EndReason) -> Option<String> {
        let recording = self.rooms.get_mut(room_id)?.recording.recorder.take()?;
        recording.recorder.shared.end(reason);
        let name = recording.recorder.name().to_owned();
        drop(recording);
        tracing::info!(recording = %name, room = %room_id, ?reason, "recording stopped");
        self.tell_peers(
            room_id,
            LinkMessage::Recording {
                room: room_id.clone(),
                active: false,
            },
        );
        self.show_recording(room_id);
        self.refresh_demand(room_id);
        Some(name)
    }

    /// A moderator's `start_recording` / `stop_recording`.
    pub(super) fn recording_request(&mut self, room_id: &RoomId, key: ParticipantKey, start: bool) {
        let moderator = self
            .rooms
            .get(room_id)
            .and_then(|room| room.participants.get(&key))
            .is_some_and(|p| p.moderator);
        let requester = RecordingRequester {
            by: Some(key),
            reply: None,
        };
        if !moderator {
            requester.answer(
                self,
                Err((
                    ErrorCode::Forbidden,
                    "only a moderator can start or stop recording".into(),
                )),
            );
        } else if start {
            self.start_recording(room_id, requester);
        } else {
            let room = room_id.clone();
            self.handle_recording(Instant::now(), RecordingInput::Stop { room, requester });
        }
    }

    /// Every local participant sees whether the room is recorded now.
    fn show_recording(&mut self, room_id: &RoomId) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let active = room.recording.active();
        for key in room.participants.keys() {
            self.outputs.push_back(ShardOutput::ToClient {
                key: *key,
                message: ServerMessage::Recording { active },
            });
        }
    }

    /// Right after `welcome`: a newcomer to a recorded room sees it.
    pub(super) fn tell_newcomer_recording(&mut self, room_id: &RoomId, key: ParticipantKey) {
        if self
            .rooms
            .get(room_id)
            .is_some_and(|room| room.recording.active())
        {
            self.outputs.push_back(ShardOutput::ToClient {
                key,
                message: ServerMessage::Recording { active: true },
            });
        }
    }

    /// A link that opened the room hears that this bridge records it.
    pub(super) fn tell_link_recording(&mut self, room_id: &RoomId, link: LinkIndex) {
        if self
            .rooms
            .get(room_id)
            .is_some_and(|room| room.recording.recorder.is_some())
        {
            self.outputs.push_back(ShardOutput::ToLink {
                link,
                message: LinkMessage::Recording {
                    room: room_id.clone(),
                    active: true,
                },
            });
        }
    }

    /// Another bridge records the room, or stopped, or its link closed the room (`active` false).
    pub(super) fn link_recording(&mut self, room_id: &RoomId, link: LinkIndex, active: bool) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let before = room.recording.active();
        if active {
            room.recording.elsewhere.insert(link);
        } else {
            room.recording.elsewhere.remove(&link);
        }
        if room.recording.active() != before {
            self.show_recording(room_id);
        }
    }

    /// When a recorded room's timer is due.
    pub(super) fn recording_timeout(&self) -> Option<Instant> {
        self.rooms
            .values()
            .filter_map(|room| room.recording.recorder.as_ref().map(RoomRecording::due))
            .min()
    }

    /// Ends recordings whose writer stopped or whose time is up; asks for the keyframes they want.
    pub(super) fn handle_recording_timeout(&mut self, now: Instant) {
        let due: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.recording.recorder.as_ref().is_some_and(|r| r.due() <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for room_id in due {
            let Some(recording) = self
                .rooms
                .get_mut(&room_id)
                .and_then(|r| r.recording.recorder.as_mut())
            else {
                continue;
            };
            recording.next_check = now + RECORDING_CHECK_INTERVAL;
            let keyframes = std::mem::take(&mut recording.keyframes);
            let end = recording
                .recorder
                .poll_end(now)
                .or(recording.ended.then_some(EndReason::WriterBehind));
            if let Some(reason) = end {
                self.stop_recording(&room_id, reason);
                continue;
            }
            for (publisher, source) in keyframes {
                self.request_keyframe(now, &room_id, publisher, source);
            }
        }
    }
}
