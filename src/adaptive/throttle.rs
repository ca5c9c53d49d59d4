//! Client-side adaptive throttling, after the Google SRE book: refuse
//! locally with probability `max(0, (requests − k·accepts) / (requests + 1))`
//! over the last couple of minutes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::error::{ConfigError, check};
use crate::random::{RandomSource, SeededRandom};

/// Settings of client-side adaptive throttling.
///
/// Every call the throttle lets through or refuses counts as a request;
/// every call the dependency answers (a success or a functional error)
/// counts as an accept. Calls the adaptive limit refuses are not counted:
/// the dependency never saw them, and counting them as not accepted would
/// have the throttle refuse calls the limit had room for (at start-up,
/// while the limit is low, and whenever the load is above it). While the dependency accepts at least one call in `k`, nothing
/// is refused; beyond, calls are refused locally with probability
/// `(requests − k·accepts) / (requests + 1)`, so that the load it sees
/// falls gradually towards `k` times what it accepts, rather than all at
/// once when a breaker opens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    pub(crate) k: f64,
    pub(crate) window: Duration,
    pub(crate) buckets: u32,
    pub(crate) seed: u64,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

impl Throttle {
    /// The defaults, the SRE book's: `k` = 2 over 2 minutes, counted in 24
    /// buckets of 5 s; seed `0x7A11`.
    ///
    /// `k` = 2 lets through twice what the dependency accepts: enough to
    /// notice its recovery at once, at the cost of sending it twice its
    /// capacity while it is overloaded, unless the adaptive limit keeps
    /// the calls it cannot serve from reaching it (the combination meant
    /// for a dependency that must get no more than it serves). Without a
    /// working limit, `k` = 1.1 sends it 1.07 times what it serves, at the
    /// cost of leaving a tenth of its capacity idle when calls arrive at
    /// random; 1 would stop learning that it recovered.
    pub const fn new() -> Self {
        Self {
            k: 2.0,
            window: Duration::from_secs(120),
            buckets: 24,
            seed: 0x7A11,
        }
    }

    /// The multiplier of accepts (default 2, in `[1, 100]`).
    pub const fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// How long requests and accepts are remembered (default 2 minutes).
    pub const fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// In how many buckets the window is counted (default 24, in
    /// `[1, 1000]`); the oldest bucket leaves whole.
    pub const fn buckets(mut self, buckets: u32) -> Self {
        self.buckets = buckets;
        self
    }

    /// The seed of the draws: the same seed and order of calls refuses the
    /// same calls.
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if !(self.k >= 1.0 && self.k <= 100.0) {
            return Err(ConfigError::new(
                "adaptive.throttle.k",
                self.k,
                "must be in [1, 100]",
            ));
        }
        if !(1..=1_000).contains(&self.buckets) {
            return Err(ConfigError::new(
                "adaptive.throttle.buckets",
                self.buckets,
                "must be in [1, 1000]",
            ));
        }
        check::positive("adaptive.throttle.window", self.window)?;
        let bucket = self.window / self.buckets;
        if bucket < Duration::from_millis(1) {
            return Err(ConfigError::conflict(
                "adaptive.throttle.window",
                self.window,
                "adaptive.throttle.buckets",
                self.buckets,
                "each bucket must last at least 1 ms",
            ));
        }
        if u64::try_from(bucket.as_nanos()).is_err() {
            return Err(ConfigError::new(
                "adaptive.throttle.window",
                self.window,
                "each bucket must last less than 500 years",
            ));
        }
        Ok(())
    }
}

struct Bucket {
    /// The index of the bucket-long period this bucket counts, plus one
    /// (zero: never used).
    epoch: AtomicU64,
    requests: AtomicU64,
    accepts: AtomicU64,
}

/// The live counts of one throttle: a ring of buckets tagged with their
/// period, as the breaker's time window.
pub(crate) struct ThrottleState {
    k: f64,
    bucket_nanos: u64,
    buckets: Box<[Bucket]>,
    random: SeededRandom,
}

impl ThrottleState {
    pub(crate) fn new(settings: &Throttle) -> Self {
        let bucket = settings.window / settings.buckets;
        Self {
            k: settings.k,
            bucket_nanos: u64::try_from(bucket.as_nanos()).unwrap_or(u64::MAX).max(1),
            buckets: (0..settings.buckets)
                .map(|_| Bucket {
                    epoch: AtomicU64::new(0),
                    requests: AtomicU64::new(0),
                    accepts: AtomicU64::new(0),
                })
                .collect(),
            random: SeededRandom::new(settings.seed),
        }
    }

    /// The bucket of `now` (nanoseconds since the limiter's start), rolled
    /// over to the current period if it counted an older one.
    fn bucket(&self, now: u64) -> &Bucket {
        let period = now / self.bucket_nanos + 1;
        let len = self.buckets.len() as u64;
        // `len` is at least 1, and the index is below it.
        #[allow(clippy::cast_possible_truncation)]
        let bucket = &self.buckets[(period % len) as usize];
        let seen = bucket.epoch.load(Relaxed);
        if seen != period
            && seen < period
            && bucket
                .epoch
                .compare_exchange(seen, period, Relaxed, Relaxed)
                .is_ok()
        {
            bucket.requests.store(0, Relaxed);
            bucket.accepts.store(0, Relaxed);
        }
        bucket
    }

    /// Requests and accepts within the window ending at `now`.
    pub(crate) fn counts(&self, now: u64) -> (u64, u64) {
        let period = now / self.bucket_nanos + 1;
        let len = self.buckets.len() as u64;
        let oldest = period.saturating_sub(len - 1);
        let (mut requests, mut accepts) = (0u64, 0u64);
        for bucket in self.buckets.iter() {
            let epoch = bucket.epoch.load(Relaxed);
            if epoch >= oldest && epoch <= period {
                requests = requests.saturating_add(bucket.requests.load(Relaxed));
                accepts = accepts.saturating_add(bucket.accepts.load(Relaxed));
            }
        }
        (requests, accepts)
    }

    /// The probability of refusing a call now.
    pub(crate) fn probability(&self, now: u64) -> f64 {
        let (requests, accepts) = self.counts(now);
        reject_probability(requests, accepts, self.k)
    }

    /// Decides whether to let a call through at `now`; a refused call is
    /// counted as a request at once.
    #[inline]
    pub(crate) fn admit(&self, now: u64) -> bool {
        let p = self.probability(now);
        if p <= 0.0 {
            return true;
        }
        // The top 53 bits, as a uniform number in [0, 1).
        #[allow(clippy::cast_precision_loss)]
        let draw = (self.random.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let admitted = draw >= p;
        if !admitted {
            self.ended(now, false);
        }
        admitted
    }

    /// Counts a request that ended at `now` (or was refused), and whether
    /// the dependency accepted it. Requests are counted when they end, so
    /// that calls still in flight do not count as refused by the
    /// dependency, as they would in a burst at start-up.
    #[inline]
    pub(crate) fn ended(&self, now: u64, accepted: bool) {
        let bucket = self.bucket(now);
        bucket.requests.fetch_add(1, Relaxed);
        if accepted {
            bucket.accepts.fetch_add(1, Relaxed);
        }
    }
}

impl std::fmt::Debug for ThrottleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottleState")
            .field("k", &self.k)
            .field("buckets", &self.buckets.len())
            .finish_non_exhaustive()
    }
}

/// `max(0, (requests − k·accepts) / (requests + 1))`, in `[0, 1)`.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn reject_probability(requests: u64, accepts: u64, k: f64) -> f64 {
    let requests = requests as f64;
    let p = k.mul_add(-(accepts as f64), requests) / (requests + 1.0);
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nothing_is_refused_while_half_the_calls_are_accepted() {
        assert!(reject_probability(100, 50, 2.0).abs() < f64::EPSILON);
        assert!(reject_probability(0, 0, 2.0).abs() < f64::EPSILON);
        let p = reject_probability(100, 10, 2.0);
        assert!((p - 80.0 / 101.0).abs() < 1e-12, "{p}");
    }

    #[test]
    fn old_buckets_leave_the_window() {
        let throttle =
            ThrottleState::new(&Throttle::new().window(Duration::from_secs(10)).buckets(10));
        let second = 1_000_000_000u64;
        for _ in 0..100 {
            throttle.ended(0, false);
        }
        assert!(throttle.probability(5 * second) > 0.9);
        assert_eq!(throttle.counts(9 * second).0, 100);
        assert_eq!(throttle.counts(10 * second).0, 0, "the first bucket left");
        assert!(throttle.probability(10 * second).abs() < f64::EPSILON);
    }

    #[test]
    fn refusals_follow_the_probability() {
        let throttle = ThrottleState::new(&Throttle::new());
        // 1,000 requests and 100 accepts: p = 800 / 1001.
        for n in 0..1_000 {
            throttle.ended(0, n < 100);
        }
        let refused = (0..10_000).filter(|_| !throttle.admit(0)).count();
        // The probability rises as refused calls are counted too.
        assert!((7_900..=10_000).contains(&refused), "{refused}");
    }

    proptest! {
        #[test]
        fn the_probability_is_a_probability(requests in any::<u64>(), accepts in any::<u64>(), k in 1.0..100.0f64) {
            let p = reject_probability(requests, accepts, k);
            prop_assert!((0.0..=1.0).contains(&p), "{p}");
        }
    }
}
