//! The allocation of one subscriber's estimate among the video sources it receives: a pure
//! function ([`allocate`]) and the hysteresis around it ([`Allocator`]).
//!
//! # Rules
//! 1. Sources are ranked: on stage (the receiver's `on_stage`, and screen shares) first, then
//!    the dominant speaker, then recent speakers (most recent first), then everyone else, in the
//!    order given.
//! 2. Last-N: only the first N sources the receiver shows (a non-zero tile height) are sent;
//!    the rest are paused (no packets; a resumed source starts on a keyframe).
//! 3. Every kept source gets its lowest layer first, in rank order, while the estimate lasts;
//!    the first-ranked one gets it even when it does not fit (a subscriber on a very thin link
//!    still sees the speaker); a lower-ranked one that does not fit is paused.
//! 4. Then, in rank order, each source is raised layer by layer up to the layer its tile needs
//!    (the ceiling) while the total still fits. Keeping a layer needs the total to fit; going
//!    above the layer a source has now needs [`UPGRADE_HEADROOM`] to spare, and
//!    ([`Allocator`]) that upgrade to have been possible for [`UPGRADE_HOLD`]: a noisy estimate
//!    does not make layers flap. A downgrade happens at once.
//! 5. Without an estimate (no transport-cc feedback from this subscriber) only the ceilings and
//!    last-N apply, as before bandwidth estimation.

use crate::simulcast::{LAYERS_MAX, Layer};
use std::time::{Duration, Instant};

/// What going above a source's current layer needs to spare: the allocation times this must fit.
pub const UPGRADE_HEADROOM: f64 = 1.15;
/// How long an upgrade must stay possible before it is made.
pub const UPGRADE_HOLD: Duration = Duration::from_secs(1);
/// Bitrates assumed for layers not measured yet (Chromium's VP8 180p, 360p, 720p).
pub const NOMINAL_LAYER_BPS: [u64; LAYERS_MAX] = [150_000, 500_000, 1_500_000];
/// Sources one allocation ranks at most; further ones are paused.
pub const SOURCES_MAX: usize = 256;

/// A source's rank for one receiver; lower ranks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    OnStage,
    DominantSpeaker,
    /// 0: the speaker before the dominant one, and so on.
    RecentSpeaker(u8),
    Other,
}

/// One video source as the allocation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceDemand {
    pub priority: Priority,
    /// The highest layer the receiver's tile needs; `None`: not shown.
    pub ceiling: Option<Layer>,
    /// Bits per second of each layer the publisher sends now; `None`: a layer it does not send.
    pub layer_bps: [Option<u64>; LAYERS_MAX],
    /// The layer allocated now; `None`: paused (or new).
    pub current: Option<Layer>,
}

impl SourceDemand {
    /// The layers it can be given, lowest first: those sent, up to the ceiling; the lowest sent
    /// one when the ceiling is below all of them; layer 0 at its nominal rate when nothing is
    /// sent yet.
    fn candidates(&self) -> impl Iterator<Item = (Layer, u64)> + '_ {
        let ceiling = self.ceiling.map_or(0, usize::from).min(LAYERS_MAX - 1);
        let lowest_sent = (0..LAYERS_MAX).find(|&l| self.layer_bps[l].is_some());
        let floor = lowest_sent.unwrap_or(0);
        (floor..LAYERS_MAX)
            .filter(move |&l| l <= ceiling.max(floor))
            .filter(move |&l| lowest_sent.is_none() || self.layer_bps[l].is_some())
            .map(move |l| (l as Layer, self.layer_bps[l].unwrap_or(NOMINAL_LAYER_BPS[l])))
            .take(if lowest_sent.is_none() { 1 } else { LAYERS_MAX })
    }
}

/// The layer a leg aims at: the receiver's `ceiling` (from its tile), lowered to the
/// allocation once the allocator has run (`Some(None)`: paused by it).
pub fn capped(ceiling: Option<Layer>, allocation: Option<Option<Layer>>) -> Option<Layer> {
    match allocation {
        None => ceiling,
        Some(allocated) => ceiling.min(allocated),
    }
}

/// What [`allocate`] made of the estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocationSummary {
    /// The allocated layers' bits per second.
    pub allocated_bps: u64,
    /// What the allocation would take with the next layer it could not give (the first in rank
    /// order below its ceiling): the rate a probe should look for.
    pub wanted_bps: u64,
    /// Some upgrade was left out because of `hold_upgrades` only.
    pub upgrade_held: bool,
}

/// Allocates `estimate_bps` (`None`: no estimate, no limit) among `sources` under `last_n`
/// (`None`: no limit). `out[i]` is the layer of `sources[i]`, `None` for paused. With
/// `hold_upgrades`, no source goes above its current layer (a paused one to its lowest at most).
pub fn allocate(
    estimate_bps: Option<u64>,
    last_n: Option<u32>,
    sources: &[SourceDemand],
    hold_upgrades: bool,
    out: &mut Vec<Option<Layer>>,
) -> AllocationSummary {
    out.clear();
    out.resize(sources.len(), None);
    let mut order: Vec<usize> = (0..sources.len().min(SOURCES_MAX)).collect();
    order.sort_by_key(|&i| sources[i].priority);
    // Last-N over the sources shown.
    let limit = last_n.map_or(usize::MAX, |n| n as usize);
    order.retain(|&i| sources[i].ceiling.is_some());
    order.truncate(limit);
    let mut summary = AllocationSummary::default();
    let Some(estimate) = estimate_bps else {
        for &i in &order {
            out[i] = sources[i].candidates().last().map(|(layer, _)| layer);
        }
        return summary;
    };
    let budget = estimate as f64;
    // Lowest layers first.
    let mut cost = vec![0u64; sources.len()];
    let mut total = 0u64;
    for (rank, &i) in order.iter().enumerate() {
        let Some((layer, bps)) = sources[i].candidates().next() else {
            continue;
        };
        if rank == 0 || (total + bps) as f64 <= budget {
            out[i] = Some(layer);
            cost[i] = bps;
            total += bps;
        }
    }
    // Then upgrades, in rank order, each as far as it goes.
    let mut wanted = None;
    for &i in &order {
        let Some(lowest) = out[i] else { continue };
        let mut layer = lowest;
        let source = &sources[i];
        let hold_at = source.current.unwrap_or(lowest);
        for (next, bps) in source.candidates().filter(|(l, _)| *l > lowest) {
            let new_total = total - cost[i] + bps;
            let above_current = source.current.is_none_or(|current| next > current);
            let needed = if above_current {
                new_total as f64 * UPGRADE_HEADROOM
            } else {
                new_total as f64
            };
            if needed > budget {
                wanted.get_or_insert(new_total);
                break;
            }
            if hold_upgrades && next > hold_at {
                summary.upgrade_held = true;
                break;
            }
            layer = next;
            total = new_total;
            cost[i] = bps;
        }
        out[i] = Some(layer);
    }
    // A shown source left paused for want of room also wants its lowest layer.
    if wanted.is_none()
        && let Some(bps) = order
            .iter()
            .find(|&&i| out[i].is_none())
            .and_then(|&i| sources[i].candidates().next())
            .map(|(_, bps)| bps)
    {
        wanted = Some(total + bps);
    }
    summary.allocated_bps = total;
    summary.wanted_bps = wanted.unwrap_or(total);
    summary
}

/// [`allocate`] with the upgrade hold: an upgrade is made once it has been possible for
/// [`UPGRADE_HOLD`] without a break; anything else at once.
#[derive(Debug, Default)]
pub struct Allocator {
    upgrade_possible_since: Option<Instant>,
    pub summary: AllocationSummary,
}

impl Allocator {
    pub fn run(
        &mut self,
        now: Instant,
        estimate_bps: Option<u64>,
        last_n: Option<u32>,
        sources: &[SourceDemand],
        out: &mut Vec<Option<Layer>>,
    ) -> AllocationSummary {
        let held = allocate(estimate_bps, last_n, sources, true, out);
        if !held.upgrade_held {
            self.upgrade_possible_since = None;
            self.summary = held;
            return held;
        }
        let since = *self.upgrade_possible_since.get_or_insert(now);
        if now.saturating_duration_since(since) < UPGRADE_HOLD {
            self.summary = held;
            return held;
        }
        self.upgrade_possible_since = None;
        self.summary = allocate(estimate_bps, last_n, sources, false, out);
        self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LADDER: [Option<u64>; 3] = [Some(150_000), Some(500_000), Some(1_500_000)];

    fn source(priority: Priority, ceiling: Option<Layer>, current: Option<Layer>) -> SourceDemand {
        SourceDemand {
            priority,
            ceiling,
            layer_bps: LADDER,
            current,
        }
    }

    fn run(estimate: Option<u64>, last_n: Option<u32>, sources: &[SourceDemand]) -> Vec<Option<Layer>> {
        let mut out = Vec::new();
        allocate(estimate, last_n, sources, false, &mut out);
        out
    }

    #[test]
    fn lowest_layers_first_then_upgrades_by_rank() {
        let others = |n| vec![source(Priority::Other, Some(2), Some(0)); n];
        let mut sources = others(3);
        sources.push(source(Priority::DominantSpeaker, Some(2), Some(0)));
        sources.push(source(Priority::OnStage, Some(2), Some(0)));
        // 5 × 150 k fit in 800 k, nothing more does with headroom.
        assert_eq!(run(Some(800_000), None, &sources), vec![Some(0); 5]);
        // 2.5 M: the stage goes to 720p first (5×150k - 150k + 1.5M = 2.1 M, ×1.15 fits).
        let out = run(Some(2_500_000), None, &sources);
        assert_eq!(out[4], Some(2));
        assert_eq!(&out[..4], &[Some(0); 4]);
        // 3.2 M: the speaker gets 360p too, the others stay low.
        let out = run(Some(3_200_000), None, &sources);
        assert_eq!((out[4], out[3]), (Some(2), Some(1)));
        // Too little for everyone's lowest: the first-ranked source anyway, the rest as fit.
        let out = run(Some(100_000), None, &sources);
        assert_eq!(out.iter().filter(|l| l.is_some()).count(), 1);
        assert_eq!(out[4], Some(0));
        // No estimate: every ceiling.
        assert_eq!(run(None, None, &sources), vec![Some(2); 5]);
    }

    #[test]
    fn the_ceiling_and_last_n_bound_everything() {
        let sources = [
            source(Priority::Other, Some(0), None),
            source(Priority::RecentSpeaker(1), Some(1), None),
            source(Priority::RecentSpeaker(0), None, None),
            source(Priority::DominantSpeaker, Some(2), None),
        ];
        assert_eq!(run(None, None, &sources), vec![Some(0), Some(1), None, Some(2)]);
        // Last-2 of those shown: the speaker and the most recent one shown.
        assert_eq!(run(None, Some(2), &sources), vec![None, Some(1), None, Some(2)]);
        assert_eq!(run(Some(10_000_000), Some(0), &sources), vec![None; 4]);
        // A source sending only its upper layers is given the lowest it sends.
        let mut upper = source(Priority::Other, Some(0), None);
        upper.layer_bps = [None, Some(500_000), Some(1_500_000)];
        assert_eq!(run(Some(10_000_000), None, &[upper]), vec![Some(1)]);
    }

    #[test]
    fn keeping_a_layer_needs_no_headroom_going_above_it_does() {
        // 1.5 M + 150 k = 1.65 M: kept at 1.7 M, not reached from below at 1.7 M.
        let kept = [
            source(Priority::OnStage, Some(2), Some(2)),
            source(Priority::Other, Some(2), Some(0)),
        ];
        assert_eq!(run(Some(1_700_000), None, &kept)[0], Some(2));
        let from_below = [
            source(Priority::OnStage, Some(2), Some(1)),
            source(Priority::Other, Some(2), Some(0)),
        ];
        assert_eq!(run(Some(1_700_000), None, &from_below)[0], Some(1));
    }

    /// An estimate that wanders ±10 % around the point where the stage's 720p layer fits:
    /// the hold and the headroom keep it from flapping.
    #[test]
    fn no_flap_under_a_noisy_estimate() {
        let t = Instant::now();
        let mut allocator = Allocator::default();
        let mut current = [Some(2), Some(0)];
        let mut switches = 0;
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut out = Vec::new();
        for step in 0..600u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed % 2001) as f64 / 10_000.0 - 0.1;
            let estimate = (1_800_000.0 * (1.0 + noise)) as u64;
            let sources = [
                source(Priority::OnStage, Some(2), current[0]),
                source(Priority::Other, Some(2), current[1]),
            ];
            allocator.run(
                t + Duration::from_millis(u64::from(step) * 100),
                Some(estimate),
                None,
                &sources,
                &mut out,
            );
            for (i, layer) in out.iter().enumerate() {
                if *layer != current[i] {
                    switches += 1;
                    current[i] = *layer;
                }
            }
        }
        // At 1.62–1.98 M, 720p + 180p (1.65 M) fits at times: a few moves, not one a second.
        assert!(switches <= 12, "{switches} switches in 60 s");
    }

    proptest! {
        /// Once every shown source's lowest layer fits, the allocation never exceeds the
        /// estimate, and no source gets more than its ceiling.
        #[test]
        fn the_allocation_never_exceeds_the_estimate(
            estimate in 0u64..6_000_000,
            specs in prop::collection::vec((0u8..4, prop::option::of(0u8..3), prop::option::of(0u8..3), 0u8..8), 0..12),
            last_n in prop::option::of(0u32..8),
        ) {
            let sources: Vec<SourceDemand> = specs
                .iter()
                .map(|&(rank, ceiling, current, sent)| SourceDemand {
                    priority: match rank {
                        0 => Priority::OnStage,
                        1 => Priority::DominantSpeaker,
                        2 => Priority::RecentSpeaker(sent),
                        _ => Priority::Other,
                    },
                    ceiling,
                    layer_bps: [0, 1, 2].map(|l| (sent & (1 << l) != 0 || l == 2).then_some(LADDER[l].unwrap())),
                    current,
                })
                .collect();
            let mut out = Vec::new();
            let summary = allocate(Some(estimate), last_n, &sources, false, &mut out);
            let mut ranked: Vec<&SourceDemand> = sources.iter().collect();
            ranked.sort_by_key(|s| s.priority);
            let lowest: u64 = ranked
                .into_iter()
                .filter(|s| s.ceiling.is_some())
                .take(last_n.map_or(usize::MAX, |n| n as usize))
                .filter_map(|s| s.candidates().next().map(|c| c.1))
                .sum();
            if lowest <= estimate {
                prop_assert!(summary.allocated_bps <= estimate);
            }
            let shown = out.iter().filter(|l| l.is_some()).count();
            prop_assert!(shown <= last_n.map_or(usize::MAX, |n| n as usize));
            for (source, layer) in sources.iter().zip(&out) {
                if let Some(layer) = layer {
                    let floor = (0..3).find(|&l| source.layer_bps[l].is_some()).unwrap() as u8;
                    prop_assert!(*layer <= source.ceiling.unwrap().max(floor));
                }
            }
        }
    }
}
