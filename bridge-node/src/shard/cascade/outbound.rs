//! A local publisher's packets onto the cascade links that asked for its stream.
//!
//! Most streams cross every such link as they are: marshalled once, without the publisher leg's
//! own extensions, behind the stream id. A simulcast camera crosses each link as one stream of
//! its own: the lowest layer covering the largest tile its far side shows it in (`demand`),
//! renumbered for that link and under the track's one SSRC, whichever layer it is now.

use super::super::{ShardOutput, ShardStats};
use crate::participant::InboundTrack;
use crate::simulcast::constraints::{LayerHeights, target_layer};
use crate::simulcast::{Layer, LayerActivity, LayerSelector};
use bridgemesh_proto::cascade::MEDIA_HEADER_LEN;
use bytes::BytesMut;
use rtc::shared::marshal::{Marshal, MarshalSize, Unmarshal};
use std::collections::VecDeque;
use std::time::Instant;

/// Sends a packet of `track` (plain RTP, `layer` of it) over the links that asked for it.
/// `packet` may be rewritten in place (every local leg has its copy already). Returns the layers
/// whose keyframes a link's selector waits for (a bit per layer).
#[allow(clippy::too_many_arguments)]
pub(in crate::shard) fn cross_links(
    now: Instant,
    track: &mut InboundTrack,
    packet: &mut [u8],
    layer: Layer,
    layers: (LayerActivity, LayerHeights),
    outputs: &mut VecDeque<ShardOutput>,
    stats: &mut ShardStats,
) -> u8 {
    if !track.simulcast {
        match rtc::rtp::Packet::unmarshal(&mut &packet[..]) {
            Ok(parsed) => send_to_links(track, &parsed, outputs, stats),
            Err(err) => tracing::trace!(%err, "packet not parsed for the links"),
        }
        return 0;
    }
    let (activity, heights) = layers;
    let Some((facts, descriptor)) = crate::simulcast::facts_of(packet, layer, track.vp8) else {
        return 0;
    };
    let clock_rate = track.codec.as_ref().map_or(90_000, |c| c.clock_rate);
    let mut keyframes = 0u8;
    for index in 0..track.links.len() {
        let demand = &mut track.links[index];
        let target = target_layer(demand.max_height, &heights);
        let selector = demand
            .selector
            .get_or_insert_with(|| LayerSelector::new(target, clock_rate));
        selector.set_target(target);
        let decision = selector.on_packet(now, &facts, &activity);
        if let Some(wanted) = selector.poll_keyframe_request(now, &activity) {
            keyframes |= 1 << wanted;
        }
        let Some(rewrite) = decision else { continue };
        let link = demand.link;
        crate::simulcast::apply(packet, &rewrite, descriptor.as_ref());
        // One SSRC whatever the layer: the far side records and reports on it as one stream.
        packet[8..12].copy_from_slice(&track.ssrc.to_be_bytes());
        if let Some(bytes) = stats.simulcast.link_bytes_by_layer.get_mut(usize::from(layer)) {
            *bytes += packet.len() as u64;
        }
        match rtc::rtp::Packet::unmarshal(&mut &packet[..]) {
            Ok(parsed) => send(track, &parsed, [link], outputs, stats),
            Err(err) => tracing::trace!(%err, "packet not parsed for a link"),
        }
    }
    keyframes
}

/// Sends a local publisher's packet as it is over every link that asked for its stream.
pub(in crate::shard) fn send_to_links(
    track: &InboundTrack,
    packet: &rtc::rtp::Packet,
    outputs: &mut VecDeque<ShardOutput>,
    stats: &mut ShardStats,
) {
    send(track, packet, track.links.iter().map(|d| d.link), outputs, stats);
}

/// Marshals `packet` once, without the publisher leg's own extensions, behind the stream id,
/// and sends it over `links`.
fn send(
    track: &InboundTrack,
    packet: &rtc::rtp::Packet,
    links: impl IntoIterator<Item = super::LinkIndex>,
    outputs: &mut VecDeque<ShardOutput>,
    stats: &mut ShardStats,
) {
    let Some(stream) = track.stream_id else {
        return;
    };
    let mut packet = packet.clone();
    packet
        .header
        .extensions
        .retain(|ext| !track.link_dropped_extensions.contains(&ext.id));
    packet.header.extension = !packet.header.extensions.is_empty();
    let mut datagram = BytesMut::zeroed(MEDIA_HEADER_LEN + packet.marshal_size());
    datagram[..MEDIA_HEADER_LEN].copy_from_slice(&stream.to_be_bytes());
    if let Err(err) = packet.marshal_to(&mut datagram[MEDIA_HEADER_LEN..]) {
        tracing::debug!(%err, "packet not marshalled for a link");
        return;
    }
    let datagram = datagram.freeze();
    for link in links {
        stats.cascade_rtp_out += 1;
        outputs.push_back(ShardOutput::LinkDatagram {
            link,
            datagram: datagram.clone(),
        });
    }
}
