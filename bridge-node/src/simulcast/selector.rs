//! One subscriber's view of one published video source: which layer it receives, and how that
//! layer's packets are renumbered so the subscriber sees one continuous stream.
//!
//! Sans-IO: [`LayerSelector::on_packet`] takes the facts of a publisher's packet and `now`, and
//! answers whether to send it and with which sequence number, timestamp, PictureID and
//! TL0PICIDX. The input that chooses is a plain target layer ([`LayerSelector::set_target`]):
//! today the receiver's constraints set it (`crate::simulcast::constraints`), a bandwidth
//! allocator can set it the same way later.
//!
//! # Switching
//! A decoder can only start on a keyframe, so a switch to another layer waits for that layer's
//! keyframe (asked for through [`LayerSelector::poll_keyframe_request`]) while the old layer keeps
//! flowing; a pause stops at once and a resume waits for a keyframe too. Each switch opens an
//! epoch: the offsets that carry the new layer's numbers on from the last packet sent (sequence
//! +1, timestamp + the time elapsed, PictureID +1, TL0PICIDX +1). A NACK for a sequence number
//! of the leg maps back through the epochs to the layer and sequence number the publisher sent.

use std::time::{Duration, Instant};

/// A simulcast layer's index: 0 the lowest resolution.
pub type Layer = u8;
/// Layers a source publishes at most (the web client's q, h, f).
pub const LAYERS_MAX: usize = 3;
/// A layer with no packet for this long is taken as stopped by the publisher (a browser drops its
/// upper layers when its camera is small, its CPU busy or its uplink thin) and not chosen.
pub const LAYER_IDLE: Duration = Duration::from_millis(1000);
/// While waiting for a keyframe, ask again this often (the shard throttles per source as well).
pub const KEYFRAME_RETRY: Duration = Duration::from_millis(500);
/// Epochs remembered for mapping NACKs back; a retransmission ring holds ~1 s, in which a
/// subscriber sees a handful of switches at most (and a probe or two, two epochs each).
const EPOCHS: usize = 8;
/// The layer an epoch of padding is marked with: its sequence numbers map back to nothing.
const PADDING: Layer = Layer::MAX;

/// When each layer of a source last sent a packet: kept once per source (not per leg), so a new
/// leg knows at once which layers the publisher sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerActivity {
    seen_at: [Option<Instant>; LAYERS_MAX],
}

impl LayerActivity {
    pub fn record(&mut self, now: Instant, layer: Layer) {
        if let Some(seen) = self.seen_at.get_mut(usize::from(layer)) {
            *seen = Some(now);
        }
    }

    /// The layer sent a packet less than [`LAYER_IDLE`] ago.
    pub fn is_active(&self, now: Instant, layer: usize) -> bool {
        self.seen_at
            .get(layer)
            .copied()
            .flatten()
            .is_some_and(|at| now.saturating_duration_since(at) < LAYER_IDLE)
    }
}

/// A publisher's packet as the selector needs it, read once per packet (not per subscriber).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketFacts {
    pub layer: Layer,
    pub seq: u16,
    pub rtp_time: u32,
    /// `Some(true)` on the first packet of a keyframe; `None` when the codec's payload is not
    /// read (not VP8): any packet may start.
    pub keyframe: Option<bool>,
    /// VP8 PictureID (value, modulus 2^7 or 2^15).
    pub picture_id: Option<(u16, u16)>,
    pub tl0_pic_idx: Option<u8>,
}

/// The numbers a forwarded packet carries on the leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    pub seq: u16,
    pub rtp_time: u32,
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
}

/// Sequence numbers are compared extended to 64 bits (a 16-bit number wraps every few minutes
/// of video): the first packet of an epoch is numbered from here, far from 0 both ways.
const EXTENDED_BASE: u64 = 1 << 32;

/// `seq` extended to 64 bits next to `reference`, an extended number within 2^15 of it.
fn extend(reference: u64, seq: u16) -> u64 {
    let diff = i64::from(seq.wrapping_sub(reference as u16) as i16);
    reference.wrapping_add_signed(diff)
}

#[derive(Debug, Clone, Copy)]
struct Epoch {
    layer: Layer,
    /// The epoch's first publisher packet and its first packet on the leg, extended.
    first_in: u64,
    first_out: u64,
    seq_offset: u16,
    rtp_time_offset: u32,
    picture_id_offset: u16,
    tl0_offset: u8,
}

/// How far before its first packet the leg's first epoch reaches: nothing was sent before it,
/// so a packet that arrives late (reordered) is still sent, under its own number.
const FIRST_EPOCH_REACH: u16 = 0x1000;

impl Epoch {
    /// The leg's first epoch: the publisher's own numbers.
    fn unchanged(facts: &PacketFacts) -> Self {
        let first = EXTENDED_BASE + u64::from(facts.seq) - u64::from(FIRST_EPOCH_REACH);
        Epoch {
            layer: facts.layer,
            first_in: first,
            first_out: first,
            seq_offset: 0,
            rtp_time_offset: 0,
            picture_id_offset: 0,
            tl0_offset: 0,
        }
    }

    fn rewrite(&self, facts: &PacketFacts) -> Rewrite {
        Rewrite {
            seq: facts.seq.wrapping_add(self.seq_offset),
            rtp_time: facts.rtp_time.wrapping_add(self.rtp_time_offset),
            picture_id: facts
                .picture_id
                .map(|(value, modulus)| value.wrapping_add(self.picture_id_offset) % modulus),
            tl0_pic_idx: facts.tl0_pic_idx.map(|v| v.wrapping_add(self.tl0_offset)),
        }
    }
}

/// The newest packet sent on the leg: where the next epoch continues from.
#[derive(Debug, Clone, Copy)]
struct LastSent {
    seq: u16,
    /// `seq` extended: every packet the leg sent is numbered in one 64-bit space.
    seq_extended: u64,
    rtp_time: u32,
    picture_id: Option<u16>,
    tl0_pic_idx: Option<u8>,
    at: Instant,
}

/// Counters of one selector, summed into the shard's stats.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SelectorStats {
    pub switches: u64,
    /// Packets of the source not sent on this leg (other layers, paused, waiting for a keyframe).
    pub dropped: u64,
}

pub struct LayerSelector {
    /// `None`: paused, nothing is sent.
    target: Option<Layer>,
    current: Option<Layer>,
    epochs: [Option<Epoch>; EPOCHS],
    newest_epoch: usize,
    /// The newest publisher packet of the current epoch, extended.
    newest_in: u64,
    last: Option<LastSent>,
    clock_rate: u32,
    keyframe_asked_at: Option<Instant>,
    /// Padding took sequence numbers since the last media packet: the next one opens an epoch
    /// that carries the numbering on after it.
    padded: bool,
    pub stats: SelectorStats,
}

impl LayerSelector {
    /// A selector aiming at `target` for a stream of `clock_rate` Hz.
    pub fn new(target: Option<Layer>, clock_rate: u32) -> Self {
        Self {
            target,
            current: None,
            epochs: [None; EPOCHS],
            newest_epoch: 0,
            newest_in: 0,
            last: None,
            clock_rate,
            keyframe_asked_at: None,
            padded: false,
            stats: SelectorStats::default(),
        }
    }

    /// A selector already on `layer`, passing its packets under the publisher's own numbers from
    /// the first one on, keyframe or not: a leg of a source that does not simulcast behaves as
    /// before simulcast, and a new leg shows the lowest layer while the target's keyframe comes.
    pub fn following(mut self, layer: Layer) -> Self {
        self.current = Some(layer);
        self
    }

    /// The layer the subscriber should receive, or `None` for nothing. A target above what the
    /// source sends is capped by [`LayerSelector::effective`] at packet time.
    pub fn set_target(&mut self, target: Option<Layer>) {
        if self.target != target {
            self.target = target;
            // A changed aim deserves a keyframe request now, not after the retry delay.
            self.keyframe_asked_at = None;
        }
    }

    pub fn target(&self) -> Option<Layer> {
        self.target
    }

    /// The layer being sent now, if any.
    pub fn current(&self) -> Option<Layer> {
        self.current
    }

    /// The layer to send at `now`: the highest active layer at or below the target, else the
    /// lowest active one above it (a source that stopped its low layers still shows).
    pub fn effective(&self, now: Instant, activity: &LayerActivity) -> Option<Layer> {
        let target = self.target?;
        let active = |layer: usize| activity.is_active(now, layer);
        let target = usize::from(target).min(LAYERS_MAX - 1);
        (0..=target)
            .rev()
            .find(|&l| active(l))
            .or_else(|| (target + 1..LAYERS_MAX).find(|&l| active(l)))
            .map(|l| l as Layer)
    }

    /// Decides one publisher packet: `Some` with the numbers to send it under, `None` to drop it
    /// for this leg. `activity` is the source's, this packet recorded. Allocates nothing.
    pub fn on_packet(
        &mut self,
        now: Instant,
        facts: &PacketFacts,
        activity: &LayerActivity,
    ) -> Option<Rewrite> {
        let layer = facts.layer;
        if usize::from(layer) >= LAYERS_MAX {
            self.stats.dropped += 1;
            return None;
        }
        if self.target.is_none() {
            self.current = None;
            self.stats.dropped += 1;
            return None;
        }
        let wanted = self.effective(now, activity);
        if self.current == Some(layer) {
            // The current layer flows until the wanted one's keyframe arrives.
            return self.forward(now, facts);
        }
        if wanted == Some(layer) && facts.keyframe != Some(false) {
            self.switch(now, facts);
            return self.forward(now, facts);
        }
        self.stats.dropped += 1;
        None
    }

    fn forward(&mut self, now: Instant, facts: &PacketFacts) -> Option<Rewrite> {
        if self.padded {
            self.continue_after_padding(facts);
        }
        if self.epochs[self.newest_epoch].is_none() {
            // Following a layer from the start ([`LayerSelector::following`]): its first packet.
            self.epochs[self.newest_epoch] = Some(Epoch::unchanged(facts));
            self.newest_in = EXTENDED_BASE + u64::from(facts.seq);
        }
        let epoch = self.epochs[self.newest_epoch].expect("set above");
        let seq_in = extend(self.newest_in, facts.seq);
        // Older than the packet that opened the epoch: numbered before the switch, never sent.
        if seq_in < epoch.first_in {
            self.stats.dropped += 1;
            return None;
        }
        self.newest_in = self.newest_in.max(seq_in);
        let rewrite = epoch.rewrite(facts);
        let seq_out = epoch.first_out + (seq_in - epoch.first_in);
        let newer = self.last.is_none_or(|last| seq_out > last.seq_extended);
        if newer {
            self.last = Some(LastSent {
                seq: rewrite.seq,
                seq_extended: seq_out,
                rtp_time: rewrite.rtp_time,
                picture_id: rewrite.picture_id,
                tl0_pic_idx: rewrite.tl0_pic_idx,
                at: now,
            });
        }
        Some(rewrite)
    }

    /// Takes the next sequence number of the leg for a padding-only packet (a bandwidth probe),
    /// with the timestamp of the last packet sent: `None` while nothing is sent on the leg. A
    /// NACK for it maps to nothing ([`LayerSelector::origin_of`]), and the next media packet
    /// continues the numbering after it.
    pub fn padding(&mut self) -> Option<(u16, u32)> {
        self.current?;
        let last = self.last.as_mut()?;
        let first_padding = !self.padded;
        last.seq = last.seq.wrapping_add(1);
        last.seq_extended += 1;
        let (seq, seq_extended, rtp_time) = (last.seq, last.seq_extended, last.rtp_time);
        if first_padding {
            let media = self.epochs[self.newest_epoch]?;
            self.newest_epoch = (self.newest_epoch + 1) % EPOCHS;
            self.epochs[self.newest_epoch] = Some(Epoch {
                layer: PADDING,
                first_in: u64::MAX,
                first_out: seq_extended,
                ..media
            });
            self.padded = true;
        }
        Some((seq, rtp_time))
    }

    /// The first media packet after padding: the epoch before the padding goes on, its
    /// numbers moved past the padding's.
    fn continue_after_padding(&mut self, facts: &PacketFacts) {
        self.padded = false;
        let Some(last) = self.last else { return };
        let media = (1..EPOCHS)
            .map(|i| (self.newest_epoch + EPOCHS - i) % EPOCHS)
            .filter_map(|i| self.epochs[i])
            .find(|epoch| epoch.layer != PADDING);
        let Some(media) = media else { return };
        let seq_in = extend(self.newest_in, facts.seq);
        self.newest_epoch = (self.newest_epoch + 1) % EPOCHS;
        self.epochs[self.newest_epoch] = Some(Epoch {
            first_in: seq_in,
            first_out: last.seq_extended + 1,
            seq_offset: last.seq.wrapping_add(1).wrapping_sub(facts.seq),
            ..media
        });
        self.newest_in = seq_in;
    }

    /// Opens an epoch at `facts`, a keyframe of the layer to send from now on.
    fn switch(&mut self, now: Instant, facts: &PacketFacts) {
        self.padded = false;
        let epoch = match self.last {
            // The leg's first packet: the publisher's numbers as they are.
            None => Epoch::unchanged(facts),
            Some(last) => {
                let out_seq = last.seq.wrapping_add(1);
                let first_out = last.seq_extended + 1;
                let elapsed = now.saturating_duration_since(last.at);
                let ticks = (elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000).max(1);
                let out_time = last.rtp_time.wrapping_add(ticks as u32);
                Epoch {
                    layer: facts.layer,
                    first_in: EXTENDED_BASE + u64::from(facts.seq),
                    first_out,
                    seq_offset: out_seq.wrapping_sub(facts.seq),
                    rtp_time_offset: out_time.wrapping_sub(facts.rtp_time),
                    picture_id_offset: match (last.picture_id, facts.picture_id) {
                        (Some(out), Some((value, _))) => out.wrapping_add(1).wrapping_sub(value),
                        _ => 0,
                    },
                    tl0_offset: match (last.tl0_pic_idx, facts.tl0_pic_idx) {
                        (Some(out), Some(value)) => out.wrapping_add(1).wrapping_sub(value),
                        _ => 0,
                    },
                }
            }
        };
        if self.current.is_some() || self.last.is_some() {
            self.stats.switches += 1;
        }
        self.newest_epoch = (self.newest_epoch + 1) % EPOCHS;
        self.epochs[self.newest_epoch] = Some(epoch);
        self.newest_in = EXTENDED_BASE + u64::from(facts.seq);
        self.current = Some(facts.layer);
    }

    /// The layer to ask the publisher a keyframe of, when the leg waits for one (a switch or a
    /// resume pending) and has not asked for [`KEYFRAME_RETRY`].
    pub fn poll_keyframe_request(&mut self, now: Instant, activity: &LayerActivity) -> Option<Layer> {
        let wanted = self.effective(now, activity)?;
        if self.current == Some(wanted) {
            return None;
        }
        if self
            .keyframe_asked_at
            .is_some_and(|at| now.saturating_duration_since(at) < KEYFRAME_RETRY)
        {
            return None;
        }
        self.keyframe_asked_at = Some(now);
        Some(wanted)
    }

    /// The publisher's (layer, sequence number) behind a sequence number sent on the leg, for
    /// answering a NACK; `None` when older than the epochs kept or never sent.
    pub fn origin_of(&self, out_seq: u16) -> Option<(Layer, u16)> {
        self.epoch_of(out_seq)
            .filter(|epoch| epoch.layer != PADDING)
            .map(|epoch| (epoch.layer, out_seq.wrapping_sub(epoch.seq_offset)))
    }

    /// The epoch a sequence number sent on the leg fell in.
    fn epoch_of(&self, out_seq: u16) -> Option<Epoch> {
        let last = self.last?;
        let seq_out = extend(last.seq_extended, out_seq);
        if seq_out > last.seq_extended {
            return None;
        }
        (0..EPOCHS)
            .map(|i| (self.newest_epoch + EPOCHS - i) % EPOCHS)
            .filter_map(|i| self.epochs[i])
            .find(|epoch| epoch.first_out <= seq_out)
    }

    /// The numbers a retransmitted publisher packet is sent under: those of the epoch its
    /// sequence number fell in when first sent.
    pub fn rewrite_retransmission(&self, out_seq: u16, facts: &PacketFacts) -> Option<Rewrite> {
        self.epoch_of(out_seq)
            .filter(|epoch| epoch.layer == facts.layer)
            .map(|epoch| epoch.rewrite(facts))
    }

    /// A publisher's sender report of `layer` as the leg states it: its RTP time moved by the
    /// current epoch's offset, or `None` when the leg does not carry that layer now.
    pub fn translate_rtp_time(&self, layer: Layer, rtp_time: u32) -> Option<u32> {
        if self.current != Some(layer) {
            return None;
        }
        let epoch = self.epochs[self.newest_epoch]?;
        Some(rtp_time.wrapping_add(epoch.rtp_time_offset))
    }
}
