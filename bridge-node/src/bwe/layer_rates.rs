//! The bitrate each simulcast layer of a source is published at, measured over one-second
//! windows from the packets the bridge receives: what the allocator weighs layers by.

use crate::simulcast::{LAYERS_MAX, Layer};
use std::time::{Duration, Instant};

/// The measuring window.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerRates {
    window_start: Option<Instant>,
    bytes: [u64; LAYERS_MAX],
    /// Bits per second of each layer over the last whole window; `None`: nothing received in it.
    bps: [Option<u64>; LAYERS_MAX],
}

impl LayerRates {
    /// A packet of `len` bytes of `layer` at `now`. Allocates nothing.
    pub fn record(&mut self, now: Instant, layer: Layer, len: usize) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= RATE_WINDOW {
            // A window with a long silence after it counts over its whole length.
            let seconds = elapsed.as_secs_f64();
            for (bps, bytes) in self.bps.iter_mut().zip(&mut self.bytes) {
                *bps = (*bytes > 0).then(|| (*bytes as f64 * 8.0 / seconds) as u64);
                *bytes = 0;
            }
            self.window_start = Some(now);
        }
        if let Some(bytes) = self.bytes.get_mut(usize::from(layer)) {
            *bytes += len as u64;
        }
    }

    /// The layers' rates over the last whole window, if it ended less than two windows ago.
    pub fn bps(&self, now: Instant) -> [Option<u64>; LAYERS_MAX] {
        match self.window_start {
            Some(start) if now.saturating_duration_since(start) < 2 * RATE_WINDOW => self.bps,
            _ => [None; LAYERS_MAX],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_layer_is_measured_over_the_last_window() {
        let t = Instant::now();
        let mut rates = LayerRates::default();
        // 1,000 bytes of layer 0 and 5,000 of layer 2 every 10 ms: 800 kbit/s and 4 Mbit/s.
        for i in 0..=100u64 {
            let at = t + Duration::from_millis(i * 10);
            rates.record(at, 0, 1000);
            rates.record(at, 2, 5000);
        }
        let now = t + Duration::from_millis(1000);
        let bps = rates.bps(now);
        assert_eq!(bps[1], None, "layer 1 not sent");
        assert!(bps[0].unwrap().abs_diff(800_000) < 10_000, "{bps:?}");
        assert!(bps[2].unwrap().abs_diff(4_000_000) < 50_000, "{bps:?}");
        assert_eq!(
            rates.bps(now + Duration::from_secs(3)),
            [None; LAYERS_MAX],
            "stale"
        );
    }
}
