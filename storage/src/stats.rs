//! A lock-free histogram of durations with fixed buckets, for the store's own timings
//! (WAL group commits) and for servers to export (Prometheus-style cumulative buckets).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds; a last bucket catches everything above.
pub const BUCKETS_S: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS_S.len() + 1],
    sum_ns: AtomicU64,
}

/// A copy of a histogram's state.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations at or below each bound of [`BUCKETS_S`], cumulative.
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS_S
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(BUCKETS_S.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let mut cumulative = Vec::with_capacity(BUCKETS_S.len());
        for c in &self.counts[..BUCKETS_S.len()] {
            running += c.load(Ordering::Relaxed);
            cumulative.push(running);
        }
        let count = running + self.counts[BUCKETS_S.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            cumulative,
            count,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(9));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.cumulative[0], 1); // <= 100 µs
        assert_eq!(s.cumulative[2], 2); // <= 500 µs
        assert_eq!(s.cumulative[5], 3); // <= 5 ms
        assert_eq!(*s.cumulative.last().unwrap(), 3); // 9 s is above every bound
        assert!((s.sum_seconds - 9.00335).abs() < 1e-9);
    }
}
