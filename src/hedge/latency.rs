//! A lock-free latency histogram that gives the hedge delay.
//!
//! Latencies are counted in log-linear buckets of microseconds (eight per
//! power of two, so a bucket is at most 12.5 % wide), with one atomic
//! counter per bucket. The window is the last `2 × GENERATION` samples, in
//! two generations: the writer that starts a generation clears the counts
//! it held two generations ago. Every `RECOMPUTE` samples, the writer of
//! the sample recomputes the percentile and stores the delay in an atomic,
//! so a call reads its delay with one load. Writers racing with a clear may
//! lose a sample: the estimate is approximate, never blocking.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Latencies from 2^32 µs (71 minutes) up share the last bucket.
const MAX_MICROS: u64 = (1 << 32) - 1;
const BUCKETS: usize = 240;
const GENERATION: u64 = 512;
const RECOMPUTE: u64 = 32;
const UNKNOWN: u64 = u64::MAX;

/// The bucket of a latency of `micros`.
#[inline]
pub(crate) fn bucket(micros: u64) -> usize {
    let v = micros.min(MAX_MICROS);
    if v < SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    ((e - (SUB_BITS - 1)) as u64 * SUB + ((v >> (e - SUB_BITS)) & (SUB - 1))) as usize
}

/// The largest latency, in microseconds, that falls in bucket `index`.
pub(crate) fn upper(index: usize) -> u64 {
    let i = index as u64;
    if i < SUB {
        return i;
    }
    let e = i / SUB + u64::from(SUB_BITS - 1);
    let lower = (SUB + i % SUB) << (e - u64::from(SUB_BITS));
    lower + (1 << (e - u64::from(SUB_BITS))) - 1
}

pub(crate) struct Histogram {
    /// The percentile hedged at, in `[0, 1)`.
    percentile: f64,
    floor: Duration,
    min_samples: u64,
    recorded: AtomicU64,
    counts: [[AtomicU64; BUCKETS]; 2],
    /// The current delay in microseconds, `UNKNOWN` until enough samples.
    delay_micros: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(max_extra_load: f64, floor: Duration) -> Self {
        // Below about two samples per hedge allowed, the percentile says
        // nothing: 2 % extra load needs 100 samples.
        let min_samples = ((2.0 / max_extra_load).ceil() as u64).clamp(10, GENERATION);
        Self {
            percentile: 1.0 - max_extra_load,
            floor,
            min_samples,
            recorded: AtomicU64::new(0),
            counts: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            delay_micros: AtomicU64::new(UNKNOWN),
        }
    }

    /// Counts one latency.
    #[inline]
    pub(crate) fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let n = self.recorded.fetch_add(1, Ordering::Relaxed);
        let generation = ((n / GENERATION) % 2) as usize;
        if n % GENERATION == 0 && n >= GENERATION {
            self.clear(generation);
        }
        self.counts[generation][bucket(micros)].fetch_add(1, Ordering::Relaxed);
        if (n + 1) % RECOMPUTE == 0 || n + 1 == self.min_samples {
            self.recompute();
        }
    }

    #[inline(never)]
    fn clear(&self, generation: usize) {
        for count in &self.counts[generation] {
            count.store(0, Ordering::Relaxed);
        }
    }

    #[inline(never)]
    fn recompute(&self) {
        let mut merged = [0_u64; BUCKETS];
        let mut total = 0;
        for generation in &self.counts {
            for (sum, count) in merged.iter_mut().zip(generation) {
                let c = count.load(Ordering::Relaxed);
                *sum += c;
                total += c;
            }
        }
        let micros = if total < self.min_samples {
            UNKNOWN
        } else {
            let rank = ((self.percentile * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            let index = merged
                .iter()
                .position(|c| {
                    seen += c;
                    seen >= rank
                })
                .unwrap_or(BUCKETS - 1);
            upper(index)
        };
        self.delay_micros.store(micros, Ordering::Relaxed);
    }

    /// The hedge delay now: the percentile, at least the floor; `None`
    /// until the window holds enough samples.
    #[inline]
    pub(crate) fn delay(&self) -> Option<Duration> {
        match self.delay_micros.load(Ordering::Relaxed) {
            UNKNOWN => None,
            micros => Some(Duration::from_micros(micros).max(self.floor)),
        }
    }

    pub(crate) fn samples(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    pub(crate) fn floor(&self) -> Duration {
        self.floor
    }

    pub(crate) fn percentile(&self) -> f64 {
        self.percentile
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_are_contiguous_and_cover_every_value() {
        let mut expected_lower = 0;
        for index in 0..BUCKETS {
            let low = if index == 0 { 0 } else { upper(index - 1) + 1 };
            assert_eq!(low, expected_lower);
            assert_eq!(bucket(low), index);
            assert_eq!(bucket(upper(index)), index);
            expected_lower = upper(index) + 1;
        }
        assert_eq!(upper(BUCKETS - 1), MAX_MICROS);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    proptest! {
        #[test]
        fn a_bucket_is_at_most_an_eighth_wide(v in 0u64..MAX_MICROS) {
            let up = upper(bucket(v));
            prop_assert!(up >= v);
            prop_assert!((up - v) as f64 <= v as f64 / 8.0 + 1.0);
        }
    }

    #[test]
    fn percentile_of_a_known_distribution() {
        let h = Histogram::new(0.1, Duration::from_millis(1));
        for i in 0..100_u64 {
            assert_eq!(h.delay().is_some(), i >= h.min_samples);
            let ms = if i % 10 == 9 { 1_000 } else { 10 };
            h.record(Duration::from_millis(ms));
        }
        // 90 % at 10 ms: the 90th percentile is the 10 ms bucket.
        let d = h.delay().unwrap();
        assert!(
            d >= Duration::from_millis(10) && d < Duration::from_micros(11_300),
            "{d:?}"
        );
        // The floor wins over a smaller percentile.
        let h = Histogram::new(0.5, Duration::from_millis(50));
        for _ in 0..64 {
            h.record(Duration::from_millis(1));
        }
        assert_eq!(h.delay(), Some(Duration::from_millis(50)));
    }

    #[test]
    fn old_generations_leave_the_window() {
        let h = Histogram::new(0.5, Duration::from_micros(1));
        for _ in 0..2 * GENERATION {
            h.record(Duration::from_secs(1));
        }
        assert!(h.delay().unwrap() >= Duration::from_secs(1));
        for _ in 0..2 * GENERATION {
            h.record(Duration::from_millis(1));
        }
        assert!(h.delay().unwrap() < Duration::from_micros(1_200));
    }
}
