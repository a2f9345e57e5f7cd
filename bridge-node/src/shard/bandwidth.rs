//! The shard's side of bandwidth estimation (`crate::bwe`): a subscriber's transport-cc
//! feedback drives its estimate.

use super::*;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;

impl Shard {
    /// A subscriber's transport-cc feedback about what the bridge sent it.
    pub(super) fn on_transport_cc_feedback(
        &mut self,
        now: Instant,
        room_id: &RoomId,
        key: ParticipantKey,
        feedback: &TransportLayerCc,
    ) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(participant) = room.participants.get_mut(&key) else {
            return;
        };
        participant.bwe.on_feedback(now, feedback);
    }
}
