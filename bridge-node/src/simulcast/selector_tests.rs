//! The layer selector against a synthetic three-layer publisher: switches on keyframes only,
//! continuous numbering across switches, pauses, NACK mapping; and a property test over random
//! target changes, keyframes and layers stopping.

use super::selector::*;
use proptest::prelude::*;
use std::time::{Duration, Instant};

const FRAME: Duration = Duration::from_millis(33);

/// One simulcast layer of a synthetic publisher: its own SSRC-local numbering, as a browser's
/// encoders number each layer independently.
#[derive(Clone)]
struct LayerSource {
    layer: Layer,
    seq: u16,
    rtp_time: u32,
    picture_id: u16,
    tl0: u8,
    packets_per_frame: u16,
}

impl LayerSource {
    fn new(layer: Layer, seed: u32) -> Self {
        Self {
            layer,
            seq: (seed.wrapping_mul(7919) % 65_536) as u16,
            rtp_time: seed.wrapping_mul(2_654_435_761),
            picture_id: (seed % 32_768) as u16,
            tl0: seed as u8,
            packets_per_frame: u16::from(layer) + 1,
        }
    }

    /// The packets of one frame, the first marked as starting a keyframe when `keyframe`.
    fn frame(&mut self, keyframe: bool) -> Vec<PacketFacts> {
        let packets = (0..self.packets_per_frame)
            .map(|i| {
                let facts = PacketFacts {
                    layer: self.layer,
                    seq: self.seq,
                    rtp_time: self.rtp_time,
                    keyframe: Some(keyframe && i == 0),
                    picture_id: Some((self.picture_id, 1 << 15)),
                    tl0_pic_idx: Some(self.tl0),
                };
                self.seq = self.seq.wrapping_add(1);
                facts
            })
            .collect();
        self.rtp_time = self.rtp_time.wrapping_add(2970);
        self.picture_id = (self.picture_id + 1) % (1 << 15);
        self.tl0 = self.tl0.wrapping_add(1);
        packets
    }
}

/// What the subscriber received: (layer, input facts, rewrite).
type Sent = Vec<(Layer, PacketFacts, Rewrite)>;

/// Checks the leg's stream: sequence numbers +1 each, PictureID +1 per frame (same within one),
/// TL0PICIDX +1 per frame, timestamps moving forward per frame; and every change of layer on the
/// first packet of a keyframe.
fn assert_continuous(sent: &Sent) {
    for pair in sent.windows(2) {
        let ((l0, f0, r0), (l1, f1, r1)) = (&pair[0], &pair[1]);
        assert_eq!(r1.seq, r0.seq.wrapping_add(1), "sequence gap: {r0:?} -> {r1:?}");
        let new_frame = l0 != l1 || f0.rtp_time != f1.rtp_time;
        if new_frame {
            assert_eq!(r1.picture_id.unwrap(), (r0.picture_id.unwrap() + 1) % (1 << 15));
            assert_eq!(r1.tl0_pic_idx.unwrap(), r0.tl0_pic_idx.unwrap().wrapping_add(1));
            let step = r1.rtp_time.wrapping_sub(r0.rtp_time);
            assert!(step > 0 && step < 90_000 * 10, "timestamp step {step}");
        } else {
            assert_eq!(r1.picture_id, r0.picture_id);
            assert_eq!(r1.rtp_time, r0.rtp_time);
        }
        if l0 != l1 {
            assert_eq!(f1.keyframe, Some(true), "switched {l0} -> {l1} off a keyframe");
        }
    }
}

struct Call {
    layers: Vec<LayerSource>,
    now: Instant,
    selector: LayerSelector,
    activity: LayerActivity,
    sent: Sent,
}

impl Call {
    fn new(target: Option<Layer>) -> Self {
        Self {
            layers: (0..LAYERS_MAX as u8)
                .map(|l| LayerSource::new(l, 1000 + u32::from(l) * 77))
                .collect(),
            now: Instant::now(),
            selector: LayerSelector::new(target, 90_000).following(0),
            activity: LayerActivity::default(),
            sent: Vec::new(),
        }
    }

    /// One frame time: each layer in `active` sends a frame, keyframes on the layers in `keyframes`.
    fn tick(&mut self, active: &[Layer], keyframes: &[Layer]) {
        self.now += FRAME;
        for layer in active {
            let packets = self.layers[usize::from(*layer)].frame(keyframes.contains(layer));
            for facts in packets {
                self.activity.record(self.now, facts.layer);
                if let Some(rewrite) = self.selector.on_packet(self.now, &facts, &self.activity) {
                    self.sent.push((*layer, facts, rewrite));
                }
            }
        }
    }

    fn layers_sent(&self) -> Vec<Layer> {
        let mut layers: Vec<Layer> = self.sent.iter().map(|(l, _, _)| *l).collect();
        layers.dedup();
        layers
    }
}

const ALL: [Layer; 3] = [0, 1, 2];

#[test]
fn a_switch_waits_for_the_target_layers_keyframe_and_numbering_continues() {
    let mut call = Call::new(Some(0));
    for _ in 0..5 {
        call.tick(&ALL, &[]);
    }
    assert_eq!(call.layers_sent(), [0]);
    call.selector.set_target(Some(2));
    assert_eq!(
        call.selector.poll_keyframe_request(call.now, &call.activity),
        Some(2)
    );
    assert_eq!(
        call.selector.poll_keyframe_request(call.now, &call.activity),
        None,
        "asked already"
    );
    for _ in 0..3 {
        call.tick(&ALL, &[0, 1]);
    }
    assert_eq!(call.layers_sent(), [0], "no switch before the target's keyframe");
    call.tick(&ALL, &[2]);
    call.tick(&ALL, &[]);
    assert_eq!(call.layers_sent(), [0, 2]);
    assert_eq!(call.selector.current(), Some(2));
    assert_eq!(
        call.selector.poll_keyframe_request(call.now, &call.activity),
        None
    );
    // Down again: 2 flows until 0's keyframe.
    call.selector.set_target(Some(0));
    call.tick(&ALL, &[]);
    call.tick(&ALL, &[0]);
    assert_eq!(call.layers_sent(), [0, 2, 0]);
    assert_eq!(call.selector.stats.switches, 2);
    assert_continuous(&call.sent);
}

#[test]
fn a_paused_source_sends_nothing_and_resumes_on_a_keyframe() {
    let mut call = Call::new(Some(1));
    call.tick(&ALL, &[1]);
    let before = call.sent.len();
    assert!(before > 0);
    call.selector.set_target(None);
    assert_eq!(
        call.selector.poll_keyframe_request(call.now, &call.activity),
        None
    );
    for _ in 0..10 {
        call.tick(&ALL, &[0, 1, 2]);
    }
    assert_eq!(call.sent.len(), before, "paused: nothing");
    call.selector.set_target(Some(1));
    assert_eq!(
        call.selector.poll_keyframe_request(call.now, &call.activity),
        Some(1)
    );
    call.tick(&ALL, &[]);
    assert_eq!(call.sent.len(), before, "resumes on a keyframe only");
    call.tick(&ALL, &[1]);
    assert!(call.sent.len() > before);
    assert_eq!(call.sent[before].1.keyframe, Some(true));
    assert_continuous(&call.sent);
}

#[test]
fn a_thumbnail_never_receives_the_top_layer_and_a_stopped_layer_is_replaced() {
    let mut call = Call::new(Some(0));
    for i in 0..100 {
        call.tick(&ALL, if i % 10 == 0 { &ALL } else { &[] });
    }
    assert_eq!(call.layers_sent(), [0]);
    // The publisher stops its low layers (its uplink thinned): the leg moves to what is left.
    for _ in 0..40 {
        call.tick(&[2], &[2]);
    }
    assert_eq!(call.selector.effective(call.now, &call.activity), Some(2));
    assert_eq!(call.layers_sent(), [0, 2]);
    assert_continuous(&call.sent);
}

/// Padding (a bandwidth probe) takes sequence numbers between two media packets: the media
/// numbering goes on after it, a NACK of a padding number maps to nothing, and NACKs of media
/// before and after it still map to what was sent.
#[test]
fn padding_takes_sequence_numbers_and_media_continues_after_it() {
    let mut call = Call::new(Some(0));
    call.tick(&ALL, &[]);
    let before = call.sent.last().unwrap().2;
    let padding: Vec<(u16, u32)> = (0..5).map(|_| call.selector.padding().unwrap()).collect();
    for (i, (seq, rtp_time)) in padding.iter().enumerate() {
        assert_eq!(*seq, before.seq.wrapping_add(1 + i as u16));
        assert_eq!(*rtp_time, before.rtp_time, "the last frame's time");
    }
    call.tick(&ALL, &[]);
    call.tick(&ALL, &[]);
    let after = call
        .sent
        .iter()
        .position(|(_, _, r)| r.seq == before.seq.wrapping_add(6));
    assert!(
        after.is_some(),
        "media continues after the padding: {:?}",
        call.sent
    );
    for (seq, _) in &padding {
        assert_eq!(call.selector.origin_of(*seq), None, "padding is never resent");
    }
    for (layer, facts, rewrite) in call.sent.clone() {
        assert_eq!(call.selector.origin_of(rewrite.seq), Some((layer, facts.seq)));
        assert_eq!(
            call.selector.rewrite_retransmission(rewrite.seq, &facts),
            Some(rewrite)
        );
    }
    // With the padding put back in its place, the stream is continuous.
    let at = after.unwrap();
    let mut with_padding = call.sent[..at].to_vec();
    let (layer, facts, _) = call.sent[at - 1];
    for (seq, rtp_time) in &padding {
        with_padding.push((
            layer,
            facts,
            Rewrite {
                seq: *seq,
                rtp_time: *rtp_time,
                ..call.sent[at - 1].2
            },
        ));
    }
    with_padding.extend_from_slice(&call.sent[at..]);
    assert_continuous(&with_padding);
    // A paused leg pads nothing.
    call.selector.set_target(None);
    call.tick(&ALL, &[]);
    assert_eq!(call.selector.padding(), None);
}

#[test]
fn nacks_map_back_to_the_layer_and_sequence_number_first_sent() {
    let mut call = Call::new(Some(0));
    call.tick(&ALL, &[]);
    call.tick(&ALL, &[]);
    call.selector.set_target(Some(1));
    call.tick(&ALL, &[1]);
    call.tick(&ALL, &[]);
    for (layer, facts, rewrite) in call.sent.clone() {
        assert_eq!(call.selector.origin_of(rewrite.seq), Some((layer, facts.seq)));
        assert_eq!(
            call.selector.rewrite_retransmission(rewrite.seq, &facts),
            Some(rewrite)
        );
    }
    let last = call.sent.last().unwrap().2.seq;
    assert_eq!(call.selector.origin_of(last.wrapping_add(1)), None, "never sent");
    // A layer-0 packet cannot be retransmitted under a sequence number of layer 1's epoch.
    let (_, q_facts, _) = call.sent[0];
    assert_eq!(call.selector.rewrite_retransmission(last, &q_facts), None);
}

#[test]
fn sender_reports_are_translated_for_the_current_layer_only() {
    let mut call = Call::new(Some(0));
    call.tick(&ALL, &[]);
    call.selector.set_target(Some(2));
    call.tick(&ALL, &[2]);
    let (_, facts, rewrite) = *call.sent.last().unwrap();
    assert_eq!(
        call.selector.translate_rtp_time(2, facts.rtp_time),
        Some(rewrite.rtp_time)
    );
    assert_eq!(call.selector.translate_rtp_time(0, 5), None);
}

/// A leg that stays on one layer for more than 2^16 packets (a few minutes of video) keeps
/// forwarding, in order, across the wrap of the sequence numbers; NACKs still map back.
#[test]
fn a_long_stream_keeps_flowing_across_sequence_number_wraps() {
    let mut call = Call::new(Some(0));
    for _ in 0..30_000 {
        call.tick(&[0, 1], &[]);
    }
    let sent = call.sent.len();
    assert_eq!(sent, 30_000, "every layer-0 packet");
    assert_continuous(&call.sent[sent - 1000..].to_vec());
    call.selector.set_target(Some(1));
    for _ in 0..40_000 {
        call.tick(&[0, 1], &[1]);
    }
    let sent = call.sent.len();
    // The first of those frames still carries layer 0's packet, then layer 1's keyframe.
    assert_eq!(
        sent,
        30_000 + 1 + 2 * 40_000,
        "layer 1 from its first keyframe on"
    );
    assert_continuous(&call.sent[sent - 1000..].to_vec());
    for &(layer, facts, rewrite) in &call.sent[sent - 300..] {
        assert_eq!(call.selector.origin_of(rewrite.seq), Some((layer, facts.seq)));
    }
}

#[derive(Debug, Clone)]
enum Step {
    Target(Option<Layer>),
    Frames { active: [bool; 3], keyframes: [bool; 3] },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => prop_oneof![Just(None), (0u8..3).prop_map(Some)].prop_map(Step::Target),
        6 => (any::<[bool; 3]>(), prop::array::uniform3(prop::bool::weighted(0.15)))
            .prop_map(|(active, keyframes)| Step::Frames { active, keyframes }),
    ]
}

proptest! {
    /// Whatever the targets, keyframes and layers that stop and start: the leg's numbering is
    /// continuous, layers change on keyframes only, nothing flows while paused, and a leg that
    /// aims at the lowest layer never carries the top one while the lowest is sent.
    #[test]
    fn the_leg_stream_is_continuous_whatever_happens(
        steps in prop::collection::vec(step(), 1..200),
        seeds in any::<[u32; 3]>(),
    ) {
        let mut call = Call::new(Some(0));
        for (layer, seed) in call.layers.iter_mut().zip(seeds) {
            *layer = LayerSource::new(layer.layer, seed);
        }
        for step in steps {
            match step {
                Step::Target(target) => call.selector.set_target(target),
                Step::Frames { active, keyframes } => {
                    let active: Vec<Layer> = (0..3).filter(|&l| active[usize::from(l)]).collect();
                    let keyframes: Vec<Layer> = (0..3).filter(|&l| keyframes[usize::from(l)]).collect();
                    let before = call.sent.len();
                    call.tick(&active, &keyframes);
                    if call.selector.target().is_none() {
                        prop_assert_eq!(call.sent.len(), before, "sent while paused");
                    }
                    if call.selector.target() == Some(0) && call.selector.current() == Some(0) && active.contains(&0) {
                        prop_assert!(call.sent[before..].iter().all(|(l, _, _)| *l == 0));
                    }
                }
            }
        }
        assert_continuous(&call.sent);
    }
}
