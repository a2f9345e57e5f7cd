//! Simulcast: a publisher sends its camera as up to three independent VP8 encodings (layers,
//! told apart by the RID header extension, RFC 8852), and each subscriber receives exactly one
//! of them per source, chosen from what its tile needs.
//!
//! # Layout
//! - [`vp8`]: the VP8 payload descriptor: keyframes, a keyframe's height, PictureID/TL0PICIDX
//!   in place.
//! - [`selector`]: per (subscriber, source) the sans-IO [`selector::LayerSelector`]: switches
//!   on keyframes only, renumbers sequence, timestamp, PictureID and TL0PICIDX continuously
//!   across switches and maps NACKs back to the layer they came from.
//! - [`constraints`]: a receiver's constraints (largest height per source, on stage) turned into
//!   the target layer the selector aims at.
//! - [`sdp`]: the `a=rid`/`a=simulcast:recv` lines the bridge's offer carries for a camera slot.
//!
//! # Where it sits on the packet path
//! The fast path reads a packet's facts once ([`facts_of`]), then each subscriber leg's selector
//! decides and the leg writer writes the rewritten numbers into its own copy
//! (`crate::fastpath::leg::LegWriter::write_rewritten`). Nothing here allocates per packet.
//!
//! # The seam for a bandwidth allocator
//! The selector's only input that chooses is [`selector::LayerSelector::set_target`]. Today
//! [`constraints::target_layer`] computes it from the receiver's constraints and the layers'
//! heights; an allocator (issue 16 parts 2–3) would compute it from its estimate as well and call
//! the same method.

pub mod constraints;
pub mod sdp;
pub mod selector;
#[cfg(test)]
mod selector_tests;
pub mod vp8;

pub use selector::{LAYERS_MAX, Layer, LayerActivity, LayerSelector, PacketFacts, Rewrite};

/// What the shard keeps per published video source: when each layer last sent, and the heights
/// the layers' keyframes tell, and the layers' bitrates (for the bandwidth allocator).
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceLayers {
    pub activity: LayerActivity,
    pub heights: constraints::LayerHeights,
    pub rates: crate::bwe::layer_rates::LayerRates,
}

/// The RIDs the bridge offers for a simulcast camera, lowest resolution first; a layer's index
/// is its position here.
pub const RIDS: [&str; LAYERS_MAX] = ["q", "h", "f"];

/// The layer a RID names, if it is one the bridge offered.
pub fn layer_of_rid(rid: &str) -> Option<Layer> {
    RIDS.iter().position(|r| *r == rid).map(|i| i as Layer)
}

/// Reads what the selectors need from a publisher's RTP packet (plain, decrypted): sequence
/// number, timestamp and, for VP8 (`vp8`), the descriptor. `None` for a malformed packet.
pub fn facts_of(packet: &[u8], layer: Layer, vp8: bool) -> Option<(PacketFacts, Option<vp8::Vp8Descriptor>)> {
    let header_len = crate::fastpath::srtp::rtp_header_len(packet).ok()?;
    let seq = u16::from_be_bytes([packet[2], packet[3]]);
    let rtp_time = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let descriptor = if vp8 && packet.len() > header_len {
        vp8::parse(packet, header_len)
    } else {
        None
    };
    let facts = PacketFacts {
        layer,
        seq,
        rtp_time,
        keyframe: match (vp8, descriptor) {
            (true, Some(d)) => Some(d.keyframe_start),
            (true, None) => Some(false),
            (false, _) => None,
        },
        picture_id: descriptor
            .and_then(|d| d.picture_id)
            .map(|p| (p.value, p.modulus())),
        tl0_pic_idx: descriptor.and_then(|d| d.tl0_pic_idx).map(|(_, v)| v),
    };
    Some((facts, descriptor))
}

/// Writes a rewrite's numbers into a copy of the packet whose descriptor is `descriptor`.
pub fn apply(packet: &mut [u8], rewrite: &Rewrite, descriptor: Option<&vp8::Vp8Descriptor>) {
    packet[2..4].copy_from_slice(&rewrite.seq.to_be_bytes());
    packet[4..8].copy_from_slice(&rewrite.rtp_time.to_be_bytes());
    let Some(descriptor) = descriptor else { return };
    if let (Some(field), Some(value)) = (descriptor.picture_id, rewrite.picture_id) {
        vp8::write_picture_id(packet, field, value);
    }
    if let (Some((at, _)), Some(value)) = (descriptor.tl0_pic_idx, rewrite.tl0_pic_idx) {
        packet[at] = value;
    }
}
