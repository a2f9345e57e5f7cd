//! Subscriber legs: adding and removing them as the room's published tracks change, and learning
//! each leg's payload type and header-extension mapping from the subscriber's answer.

use crate::demux::ParticipantKey;
use crate::fastpath::leg::LegWriter;
use crate::participant::{LEG_LOCAL_EXTENSIONS, Participant, SendLeg};
use crate::shard::Room;
use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::signaling::MediaSource;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use std::collections::HashMap;

/// Removes legs nobody publishes any more and adds a leg for every new (publisher, source).
pub(crate) fn sync_legs(
    participant: &mut Participant,
    desired: &[(ParticipantKey, MediaSource, ParticipantId, RTCRtpCodec)],
) -> Result<(), rtc::shared::error::Error> {
    let stale: Vec<_> = participant
        .legs
        .keys()
        .filter(|(publisher, source)| !desired.iter().any(|(p, s, _, _)| p == publisher && s == source))
        .copied()
        .collect();
    for leg_key in stale {
        if let Some(leg) = participant.legs.remove(&leg_key) {
            participant.pc.remove_track(leg.sender_id)?;
        }
    }
    for (publisher, source, publisher_id, codec) in desired {
        if participant.legs.contains_key(&(*publisher, *source)) {
            continue;
        }
        participant.track_counter += 1;
        let track_id = format!("{publisher_id}-{}-{}", source.as_str(), participant.track_counter);
        let ssrc = rand::random::<u32>();
        let kind = if source.is_audio() {
            RtpCodecKind::Audio
        } else {
            RtpCodecKind::Video
        };
        let track = MediaStreamTrack::new(
            publisher_id.to_string(),
            track_id.clone(),
            format!("{publisher_id} {}", source.as_str()),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                active: true,
                codec: codec.clone(),
                ..Default::default()
            }],
        );
        // A transceiver of its own, send-only: `add_track` would put the leg on the first
        // transceiver of its kind without a sender, which is the participant's own recvonly slot,
        // and a participant with nothing to publish answers that m-line inactive, losing the leg.
        let transceiver = participant.pc.add_transceiver_from_track(
            track,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                streams: vec![],
                send_encodings: vec![],
            }),
        )?;
        let sender_id = participant
            .pc
            .rtp_transceiver(transceiver)
            .and_then(|t| t.sender())
            .ok_or(rtc::shared::error::Error::ErrRTPSenderNotExisted)?;
        participant.legs.insert(
            (*publisher, *source),
            SendLeg {
                sender_id,
                track_id,
                ssrc,
                payload_type: None,
                extension_map: Vec::new(),
                writer: None,
                declined: false,
                allocation: None,
                selector: (!source.is_audio()).then(|| {
                    let target = crate::simulcast::constraints::target_layer(
                        crate::simulcast::constraints::max_height_for(
                            participant.constraints.as_ref(),
                            publisher_id,
                            *source,
                        ),
                        &Default::default(),
                    );
                    crate::simulcast::LayerSelector::new(target, codec.clock_rate).following(0)
                }),
            },
        );
    }
    Ok(())
}

/// A publisher track's codec and its negotiated header extensions as (URI, id).
type PublishedFormat = (RTCRtpCodec, Vec<(String, u8)>);

/// After an answer: learns each unresolved leg's payload type and header-extension id mapping.
/// Returns the legs that became ready.
pub(crate) fn resolve_legs(room: &mut Room, key: ParticipantKey) -> Vec<(ParticipantKey, MediaSource)> {
    let publishers: HashMap<(ParticipantKey, MediaSource), PublishedFormat> = room
        .participants
        .values()
        .filter(|p| p.key != key)
        .flat_map(|p| {
            p.slots.iter().filter_map(move |slot| {
                let track = slot.track.as_ref()?;
                let extensions = track
                    .extensions
                    .iter()
                    .map(|e| (e.uri.clone(), e.id as u8))
                    .collect();
                Some(((p.key, slot.source), (track.codec.clone()?, extensions)))
            })
        })
        .chain(room.cascade.remote.iter().flat_map(|(remote_key, p)| {
            p.streams.iter().map(move |(source, stream)| {
                (
                    (*remote_key, *source),
                    (stream.codec.clone(), stream.extensions.clone()),
                )
            })
        }))
        .collect();
    let Some(participant) = room.participants.get_mut(&key) else {
        return Vec::new();
    };
    let mut ready = Vec::new();
    let Participant { pc, legs, .. } = participant;
    for (leg_key, leg) in legs.iter_mut().filter(|(_, leg)| leg.payload_type.is_none()) {
        let Some((codec, publisher_extensions)) = publishers.get(leg_key) else {
            continue;
        };
        let Some(mut sender) = pc.rtp_sender(leg.sender_id) else {
            continue;
        };
        let parameters = &sender.get_parameters().rtp_parameters;
        leg.payload_type = parameters
            .codecs
            .iter()
            .find(|c| same_codec(&c.rtp_codec, codec))
            .map(|c| c.payload_type);
        leg.extension_map = publisher_extensions
            .iter()
            .filter(|(uri, _)| !LEG_LOCAL_EXTENSIONS.contains(&uri.as_str()))
            .filter_map(|(uri, from)| {
                let to = parameters.header_extensions.iter().find(|e| &e.uri == uri)?;
                Some((*from, to.id as u8))
            })
            .collect();
        // The subscriber's transport-wide sequence goes where the publisher's was.
        let transport_cc = publisher_extensions
            .iter()
            .find(|(uri, _)| uri == crate::fastpath::twcc::TRANSPORT_CC_URI)
            .and_then(|(_, from)| {
                let to = parameters
                    .header_extensions
                    .iter()
                    .find(|e| e.uri == crate::fastpath::twcc::TRANSPORT_CC_URI)?;
                Some((*from, u8::try_from(to.id).ok()?))
            });
        if let Some(payload_type) = leg.payload_type {
            let writer = LegWriter::new(leg.ssrc, payload_type, leg.extension_map.clone());
            leg.writer = Some(match transport_cc {
                Some((from, to)) => writer.with_transport_cc(from, to),
                None => writer,
            });
            ready.push(*leg_key);
        } else {
            tracing::debug!(codec = %codec.mime_type, "subscriber did not accept the publisher's codec");
        }
    }
    ready
}

/// Codecs match when the subscriber can decode the publisher's stream untouched.
fn same_codec(a: &RTCRtpCodec, b: &RTCRtpCodec) -> bool {
    a.mime_type.eq_ignore_ascii_case(&b.mime_type) && a.clock_rate == b.clock_rate && a.channels == b.channels
}

/// After an answer: marks each leg declined or wanted by the direction the answer negotiated for
/// its m-line (the bridge offers `sendonly`; an answer of `recvonly` receives it, `inactive` or a
/// rejected m-line does not). Returns the legs that were declined and are wanted again: their
/// subscriber needs a keyframe to decode from.
pub(crate) fn apply_answer_directions(participant: &mut Participant) -> Vec<(ParticipantKey, MediaSource)> {
    let Participant { pc, legs, .. } = participant;
    let sending: Vec<_> = pc
        .get_transceivers()
        .collect::<Vec<_>>()
        .into_iter()
        .filter_map(|id| {
            let transceiver = pc.rtp_transceiver(id)?;
            let sender = transceiver.sender()?;
            Some((sender, transceiver.current_direction().has_send()))
        })
        .collect();
    let mut resumed = Vec::new();
    for (leg_key, leg) in legs.iter_mut() {
        let wanted = sending
            .iter()
            .find(|(sender, _)| *sender == leg.sender_id)
            .is_some_and(|(_, sends)| *sends);
        if wanted && leg.declined {
            resumed.push(*leg_key);
        }
        leg.declined = !wanted;
    }
    resumed
}
