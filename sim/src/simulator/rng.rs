//! The simulator's one source of randomness: the bridge's SplitMix64 (a seed means the same run
//! on every machine and every version of every dependency), with the draws a scenario needs.

use bridgemesh_bridge::splitmix::SplitMix64;

pub struct SimRng(SplitMix64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        SimRng(SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0.unit()
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.0.below(high - low + 1)
    }

    /// Exponentially distributed with this mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    /// An index drawn with probability proportional to its weight (weights sum above 0).
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut pick = self.unit() * total;
        for (index, weight) in weights.iter().enumerate() {
            if pick < *weight {
                return index;
            }
            pick -= weight;
        }
        weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_sequence_and_draws_stay_in_range() {
        let draws = |seed| {
            let mut rng = SimRng::new(seed);
            (0..5).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        let mut rng = SimRng::new(1);
        for _ in 0..1000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            assert!((3..=5).contains(&rng.between(3, 5)));
            assert!(rng.exponential(2.0) >= 0.0);
            assert_eq!(rng.weighted(&[0.0, 1.0, 0.0]), 1);
        }
    }
}
