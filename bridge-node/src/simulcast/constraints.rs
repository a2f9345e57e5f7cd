//! A receiver's constraints turned into the layer each of its legs aims at.
//!
//! The receiver says, per source, the largest height its tile shows (0: not shown, pause it),
//! a height for sources it does not name, and which sources are on stage. A leg aims at the
//! lowest layer whose height covers the tile: a 180-pixel thumbnail never receives the 720p
//! layer. Layer heights come from the layers' own keyframes (the VP8 frame header, in the clear
//! under end-to-end encryption too); until a layer's keyframe has been seen, its nominal height
//! ([`NOMINAL_HEIGHTS`], what the web client publishes from a 720p camera) stands in.

use super::{LAYERS_MAX, Layer};
use bridgemesh_proto::ParticipantId;
use bridgemesh_proto::signaling::{MediaSource, ReceiverConstraints};

/// Heights assumed for layers not yet seen: scaleResolutionDownBy 4, 2, 1 of 720p.
pub const NOMINAL_HEIGHTS: [u16; LAYERS_MAX] = [180, 360, 720];
/// Sources named in one constraints message at most; more is refused.
pub const CONSTRAINED_SOURCES_MAX: usize = 256;

/// The heights a source's layers were last seen at, from their keyframes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerHeights(pub [Option<u16>; LAYERS_MAX]);

impl LayerHeights {
    /// Records a keyframe's height; true when it changed what was known.
    pub fn record(&mut self, layer: Layer, height: u16) -> bool {
        let Some(slot) = self.0.get_mut(usize::from(layer)) else {
            return false;
        };
        let changed = *slot != Some(height);
        *slot = Some(height);
        changed
    }

    fn height(&self, layer: usize) -> u16 {
        self.0[layer].unwrap_or(NOMINAL_HEIGHTS[layer])
    }
}

/// The layer a tile of `max_height` pixels needs: the lowest whose height covers it, the top
/// layer when none does, `None` for 0 (paused). The selector caps it to the layers the source
/// actually sends.
pub fn target_layer(max_height: u16, heights: &LayerHeights) -> Option<Layer> {
    if max_height == 0 {
        return None;
    }
    let layer = (0..LAYERS_MAX)
        .find(|&l| heights.height(l) >= max_height)
        .unwrap_or(LAYERS_MAX - 1);
    Some(layer as Layer)
}

/// Why a constraints message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConstraintsError {
    #[error("at most {CONSTRAINED_SOURCES_MAX} sources may be constrained, {0} were")]
    TooManySources(usize),
    #[error("audio has no layers: constraints name video sources only")]
    Audio,
}

/// Checks a constraints message before it is kept.
pub fn validate(constraints: &ReceiverConstraints) -> Result<(), ConstraintsError> {
    let named = constraints.sources.len() + constraints.on_stage.len();
    if named > CONSTRAINED_SOURCES_MAX {
        return Err(ConstraintsError::TooManySources(named));
    }
    let audio = constraints.sources.iter().any(|s| s.source.is_audio())
        || constraints.on_stage.iter().any(|s| s.source.is_audio());
    if audio {
        return Err(ConstraintsError::Audio);
    }
    Ok(())
}

/// The largest height the receiver wants of one source: its own entry, else the height given to
/// sources on stage or to the rest. No constraints at all (a client that never sends them):
/// everything, as before simulcast.
pub fn max_height_for(
    constraints: Option<&ReceiverConstraints>,
    publisher: &ParticipantId,
    source: MediaSource,
) -> u16 {
    let Some(constraints) = constraints else {
        return u16::MAX;
    };
    if let Some(entry) = constraints
        .sources
        .iter()
        .find(|s| &s.participant_id == publisher && s.source == source)
    {
        return entry.max_height;
    }
    let on_stage = constraints
        .on_stage
        .iter()
        .any(|s| &s.participant_id == publisher && s.source == source);
    if on_stage {
        constraints.on_stage_max_height
    } else {
        constraints.default_max_height
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridgemesh_proto::signaling::{SourceConstraint, SourceRef};

    #[test]
    fn the_lowest_layer_covering_the_tile_is_chosen() {
        let unknown = LayerHeights::default();
        assert_eq!(target_layer(0, &unknown), None, "0 pauses");
        assert_eq!(target_layer(90, &unknown), Some(0));
        assert_eq!(target_layer(180, &unknown), Some(0));
        assert_eq!(target_layer(181, &unknown), Some(1));
        assert_eq!(target_layer(720, &unknown), Some(2));
        assert_eq!(
            target_layer(u16::MAX, &unknown),
            Some(2),
            "more than any: the top"
        );
        // A 480p camera's layers as their keyframes tell them.
        let mut seen = LayerHeights::default();
        assert!(seen.record(0, 120));
        assert!(seen.record(1, 240));
        assert!(!seen.record(1, 240));
        assert!(seen.record(2, 480));
        assert!(!seen.record(7, 480), "no such layer");
        assert_eq!(target_layer(180, &seen), Some(1));
        assert_eq!(target_layer(120, &seen), Some(0));
        assert_eq!(target_layer(360, &seen), Some(2));
    }

    #[test]
    fn a_source_gets_its_own_height_else_the_stage_or_default_one() {
        let alice = ParticipantId::new("alice").unwrap();
        let bob = ParticipantId::new("bob").unwrap();
        let carol = ParticipantId::new("carol").unwrap();
        let constraints = ReceiverConstraints {
            default_max_height: 180,
            on_stage_max_height: 720,
            sources: vec![SourceConstraint {
                participant_id: alice.clone(),
                source: MediaSource::Camera,
                max_height: 0,
            }],
            on_stage: vec![SourceRef {
                participant_id: bob.clone(),
                source: MediaSource::Screen,
            }],
            last_n: None,
        };
        validate(&constraints).unwrap();
        let of = |p: &ParticipantId, s| max_height_for(Some(&constraints), p, s);
        assert_eq!(of(&alice, MediaSource::Camera), 0);
        assert_eq!(of(&alice, MediaSource::Screen), 180);
        assert_eq!(of(&bob, MediaSource::Screen), 720);
        assert_eq!(of(&carol, MediaSource::Camera), 180);
        assert_eq!(max_height_for(None, &carol, MediaSource::Camera), u16::MAX);

        let mut audio = constraints.clone();
        audio.sources[0].source = MediaSource::Microphone;
        assert_eq!(validate(&audio), Err(ConstraintsError::Audio));
        let mut many = constraints;
        many.sources = vec![many.sources[0].clone(); CONSTRAINED_SOURCES_MAX + 1];
        assert!(matches!(
            validate(&many),
            Err(ConstraintsError::TooManySources(_))
        ));
    }
}
