//! The few statistics a benchmark table needs: percentiles, a median with its spread over
//! rounds, and the rotation that gives every variant every slot of a round in turn.

/// The `p`-th percentile (0..=100) of `samples`, nearest-rank; sorts in place.
pub fn percentile(samples: &mut [u64], p: f64) -> u64 {
    assert!(!samples.is_empty(), "percentile of no samples");
    assert!((0.0..=100.0).contains(&p), "percentile {p} outside 0..=100");
    samples.sort_unstable();
    samples[rank(samples.len(), p)]
}

/// The `p`-th percentile of already `sorted` samples (nearest rank).
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    assert!((0.0..=100.0).contains(&p), "percentile {p} outside 0..=100");
    debug_assert!(sorted.is_sorted_by(|a, b| a <= b), "samples are not sorted");
    sorted[rank(sorted.len(), p)]
}

fn rank(len: usize, p: f64) -> usize {
    let rank = ((p / 100.0) * len as f64).ceil() as usize;
    rank.clamp(1, len) - 1
}

/// Median and range of one figure over rounds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Spread {
        assert!(!samples.is_empty(), "a spread of no samples");
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Spread {
            median: percentile_sorted(&sorted, 50.0),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }

    /// `12345 [12000–12600]`, with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!(
            "{:.d$} [{:.d$}–{:.d$}]",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }
}

/// The variants of round `round`, rotated so that each variant takes each slot in turn.
pub fn rotated<T: Clone>(variants: &[T], round: usize) -> Vec<T> {
    let mut order = variants.to_vec();
    if !order.is_empty() {
        let by = round % order.len();
        order.rotate_left(by);
    }
    order
}
