//! An interceptor that hands the inbound RTCP the bridge acts on to the application: keyframe
//! requests (PLI, FIR), relayed to publishers (the synthetic participants answer them with
//! keyframes); NACKs, answered from the fast path's retransmission rings; sender reports,
//! translated onto each subscriber leg.
//!
//! Inbound RTCP stops at the end of the `rtc` interceptor chain unless an interceptor marks it
//! [`Attribute::DeliverToApplication`]; without this, `TrackLocal::poll` on a sender never sees
//! the peer's PLIs. Placed last ([`SLOT`]) so every other interceptor has seen the whole
//! compound packet first; everything else is dropped from what it forwards.

use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use std::collections::VecDeque;
use std::time::Instant;

/// Application-most slot, as in the `rtcp-processing` example (the named slots end at 13 000).
pub const SLOT: Slot = Slot::Custom(14_000);

/// Whether an RTCP packet asks for a keyframe.
pub fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

/// Whether the application handles an RTCP packet: keyframe requests, NACKs, sender reports,
/// and transport-cc feedback (a subscriber's, for the bridge's estimator).
pub fn is_for_application(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    is_keyframe_request(packet)
        || any.is::<TransportLayerNack>()
        || any.is::<SenderReport>()
        || any.is::<TransportLayerCc>()
}

#[derive(Default)]
pub struct KeyframeRequestForwarder {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| is_for_application(p.as_ref()))
                .cloned()
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for KeyframeRequestForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
