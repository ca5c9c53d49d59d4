//! The retry budget: retries as a share of recent requests, plus a floor.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{ConfigError, check};

const BUCKETS: u64 = 10;
const COUNT_BITS: u32 = 21;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const EPOCH_BITS: u32 = 64 - 2 * COUNT_BITS;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;

/// Caps retries at a share of recent requests plus a floor, so that a
/// failing callee sees at most `1 + ratio` times its normal load from
/// retries, not three or four times.
///
/// Over the last `window`, retries may be at most
/// `ratio × requests + min_per_sec × window` (in seconds). A request is
/// counted once per logical call; each retry takes one from the budget. The
/// defaults are 20 % of requests, 10 retries per second and a 10 s window.
///
/// One budget is shared by every clone of the retry layer that holds it and
/// every service those make; it can also be shared by several layers (say,
/// every route to one host). It decides with atomics only: the window is
/// ten buckets, each one `u64` holding its epoch and its two counts.
///
/// ```
/// use std::time::Duration;
/// use steadfast::retry::RetryBudget;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), steadfast::ConfigError> {
/// let budget = RetryBudget::builder().ratio(0.1).min_per_sec(0).build()?;
/// for _ in 0..30 {
///     budget.deposit();
/// }
/// let granted = (0..10).filter(|_| budget.try_withdraw()).count();
/// assert_eq!(granted, 3); // 10 % of 30 requests
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    ratio: f64,
    reserve: f64,
    window: Duration,
    bucket_nanos: u64,
    start: Instant,
    buckets: [AtomicU64; BUCKETS as usize],
}

/// Builds a [`RetryBudget`].
///
/// ```
/// use std::time::Duration;
/// use steadfast::retry::RetryBudget;
///
/// let budget = RetryBudget::builder()
///     .ratio(0.1)
///     .min_per_sec(5)
///     .window(Duration::from_secs(30))
///     .build()?;
/// assert!(budget.try_withdraw()); // the per-second floor allows a retry at once
///
/// let err = RetryBudget::builder().ratio(f64::NAN).build().unwrap_err();
/// assert_eq!(err.field(), "retry.budget.ratio");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RetryBudgetBuilder {
    ratio: f64,
    min_per_sec: u32,
    window: Duration,
}

impl RetryBudget {
    /// A budget of 20 % of requests plus 10 retries per second over 10 s.
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder {
            ratio: 0.2,
            min_per_sec: 10,
            window: Duration::from_secs(10),
        }
    }

    /// Records a logical call.
    #[inline]
    pub fn deposit(&self) {
        self.inner.deposit(Instant::now());
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_withdraw(&self) -> bool {
        self.inner.try_withdraw(Instant::now()).is_some()
    }

    /// Takes one retry from the budget, to be given back if the retry is
    /// never sent (its call dropped during the backoff).
    pub(crate) fn withdraw(&self) -> Option<Withdrawal> {
        let epoch = self.inner.try_withdraw(Instant::now())?;
        Some(Withdrawal {
            budget: Some(self.clone()),
            epoch,
        })
    }

    /// Requests and retries counted in the current window.
    pub fn counts(&self) -> (u64, u64) {
        let (requests, retries, _) = self.inner.sums(self.inner.epoch(Instant::now()));
        (requests, retries)
    }

    /// How many more retries the budget would grant now.
    pub fn remaining(&self) -> u64 {
        let (requests, retries) = self.counts();
        let allowed = self.inner.allowed(requests);
        (allowed - retries as f64).max(0.0).floor() as u64
    }
}

impl RetryBudgetBuilder {
    /// Retries allowed per request counted, between 0 and 1.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Retries allowed per second whatever the traffic (the floor that lets
    /// a quiet client retry at all).
    pub fn min_per_sec(mut self, min_per_sec: u32) -> Self {
        self.min_per_sec = min_per_sec;
        self
    }

    /// How far back requests and retries are counted, from 1 s to 1 h.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Checks the settings and builds the budget.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        check::in_closed("retry.budget.ratio", self.ratio, 0.0, 1.0)?;
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "retry.budget.window",
                self.window,
                "must be between 1s and 1h",
            ));
        }
        Ok(RetryBudget {
            inner: Arc::new(Inner {
                ratio: self.ratio,
                reserve: f64::from(self.min_per_sec) * self.window.as_secs_f64(),
                window: self.window,
                // The window is at most an hour, so this fits easily.
                bucket_nanos: u64::try_from(self.window.as_nanos() / u128::from(BUCKETS))
                    .unwrap_or(u64::MAX),
                start: Instant::now(),
                buckets: Default::default(),
            }),
        })
    }
}

#[inline]
fn pack(epoch: u64, requests: u64, retries: u64) -> u64 {
    ((epoch & EPOCH_MASK) << (2 * COUNT_BITS)) | (requests << COUNT_BITS) | retries
}

#[inline]
fn unpack(word: u64) -> (u64, u64, u64) {
    (
        word >> (2 * COUNT_BITS),
        (word >> COUNT_BITS) & COUNT_MAX,
        word & COUNT_MAX,
    )
}

impl Inner {
    #[inline]
    fn epoch(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start);
        // Seconds and nanoseconds apart: no 128-bit division on the hot path.
        let nanos = elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()));
        nanos / self.bucket_nanos
    }

    #[inline]
    fn slot(&self, epoch: u64) -> &AtomicU64 {
        &self.buckets[(epoch % BUCKETS) as usize]
    }

    fn allowed(&self, requests: u64) -> f64 {
        self.ratio.mul_add(requests as f64, self.reserve)
    }

    /// Counts of `epoch`'s bucket as stored in `word`, if it is that epoch's.
    #[inline]
    fn counts_of(word: u64, epoch: u64) -> Option<(u64, u64)> {
        let (tag, requests, retries) = unpack(word);
        (tag == epoch & EPOCH_MASK).then_some((requests, retries))
    }

    /// Whether `word` belongs to an epoch after `epoch` (a writer that
    /// stalled for a whole window must not wipe a newer bucket).
    #[inline]
    fn is_newer(word: u64, epoch: u64) -> bool {
        let tag = unpack(word).0;
        let ahead = tag.wrapping_sub(epoch & EPOCH_MASK) & EPOCH_MASK;
        ahead != 0 && ahead < (1 << (EPOCH_BITS - 1))
    }

    fn deposit(&self, now: Instant) {
        let epoch = self.epoch(now);
        let _ = self
            .slot(epoch)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                if Self::is_newer(word, epoch) {
                    return None;
                }
                let (requests, retries) = Self::counts_of(word, epoch).unwrap_or((0, 0));
                Some(pack(epoch, (requests + 1).min(COUNT_MAX), retries))
            });
    }

    /// Sums over the window ending with `epoch`: requests, retries, and the
    /// current bucket's word.
    fn sums(&self, epoch: u64) -> (u64, u64, u64) {
        let (mut requests, mut retries) = (0, 0);
        for back in 1..BUCKETS.min(epoch + 1) {
            if let Some((q, t)) = Self::counts_of(
                self.slot(epoch - back).load(Ordering::Acquire),
                epoch - back,
            ) {
                requests += q;
                retries += t;
            }
        }
        let current = self.slot(epoch).load(Ordering::Acquire);
        if let Some((q, t)) = Self::counts_of(current, epoch) {
            requests += q;
            retries += t;
        }
        (requests, retries, current)
    }

    /// Takes a retry; the epoch it was counted in, or `None` if spent.
    fn try_withdraw(&self, now: Instant) -> Option<u64> {
        let epoch = self.epoch(now);
        loop {
            let (requests, retries, current) = self.sums(epoch);
            if Self::is_newer(current, epoch) || (retries + 1) as f64 > self.allowed(requests) {
                return None;
            }
            let (q, t) = Self::counts_of(current, epoch).unwrap_or((0, 0));
            let next = pack(epoch, q, (t + 1).min(COUNT_MAX));
            if self
                .slot(epoch)
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Some(epoch);
            }
        }
    }

    /// Gives back a retry counted in `epoch`, if that bucket still holds it.
    fn refund(&self, epoch: u64) {
        let _ = self
            .slot(epoch)
            .fetch_update(
                Ordering::AcqRel,
                Ordering::Acquire,
                |word| match Self::counts_of(word, epoch) {
                    Some((requests, retries)) if retries > 0 => {
                        Some(pack(epoch, requests, retries - 1))
                    }
                    _ => None,
                },
            );
    }
}

/// A retry taken from a budget: given back when dropped unless it was
/// [`spent`](Withdrawal::spend).
pub(crate) struct Withdrawal {
    budget: Option<RetryBudget>,
    epoch: u64,
}

impl Withdrawal {
    /// The retry was sent: it stays counted.
    pub(crate) fn spend(mut self) {
        self.budget = None;
    }
}

impl Drop for Withdrawal {
    fn drop(&mut self) {
        if let Some(budget) = self.budget.take() {
            budget.inner.refund(self.epoch);
        }
    }
}

impl fmt::Debug for Withdrawal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Withdrawal")
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (requests, retries) = self.counts();
        f.debug_struct("RetryBudget")
            .field("ratio", &self.inner.ratio)
            .field("reserve", &self.inner.reserve)
            .field("window", &self.inner.window)
            .field("requests", &requests)
            .field("retries", &retries)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn budget(ratio: f64, min_per_sec: u32, window_s: u64) -> RetryBudget {
        RetryBudget::builder()
            .ratio(ratio)
            .min_per_sec(min_per_sec)
            .window(Duration::from_secs(window_s))
            .build()
            .unwrap()
    }

    #[test]
    fn floor_alone_allows_min_per_sec_times_window() {
        let b = budget(0.0, 2, 5);
        let t0 = b.inner.start;
        let granted = (0..100)
            .filter(|_| b.inner.try_withdraw(t0).is_some())
            .count();
        assert_eq!(granted, 10);
        // A whole window later the old retries have left it.
        assert!(b.inner.try_withdraw(t0 + Duration::from_secs(5)).is_some());
    }

    #[test]
    fn a_withdrawal_not_spent_is_given_back() {
        let b = budget(0.0, 1, 1);
        let w = b.withdraw().unwrap();
        assert!(b.withdraw().is_none(), "the floor of one is taken");
        drop(w);
        assert_eq!(b.counts(), (0, 0));
        b.withdraw().unwrap().spend();
        assert_eq!(b.counts(), (0, 1));
        assert!(b.withdraw().is_none());
    }

    #[test]
    fn bad_settings_are_refused() {
        for ratio in [-0.1, 1.5, f64::NAN] {
            let err = RetryBudget::builder().ratio(ratio).build().unwrap_err();
            assert_eq!(err.field(), "retry.budget.ratio");
        }
        for window in [
            Duration::ZERO,
            Duration::from_millis(999),
            Duration::from_secs(3601),
        ] {
            let err = RetryBudget::builder().window(window).build().unwrap_err();
            assert_eq!(err.field(), "retry.budget.window");
        }
    }

    #[test]
    fn packing_round_trips_and_saturates() {
        assert_eq!(unpack(pack(5, 7, 9)), (5, 7, 9));
        assert_eq!(
            unpack(pack(EPOCH_MASK + 3, COUNT_MAX, 0)),
            (2, COUNT_MAX, 0)
        );
        let b = budget(1.0, 0, 1);
        b.inner.buckets[0].store(pack(0, COUNT_MAX, 0), Ordering::Relaxed);
        b.inner.deposit(b.inner.start);
        assert_eq!(b.counts().0, COUNT_MAX);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Deposit,
        Withdraw,
        Advance(u64),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![
                6 => Just(Op::Deposit),
                4 => Just(Op::Withdraw),
                1 => (0u64..3_000).prop_map(Op::Advance),
            ],
            1..400,
        )
    }

    proptest! {
        /// Over any sequence, the budget grants a retry exactly when the
        /// retries in the window, this one included, stay within
        /// `ratio × requests + min_per_sec × window`, as a plain model
        /// of that formula decides.
        #[test]
        fn never_admits_more_than_its_formula(
            ratio in 0.0f64..=1.0,
            min_per_sec in 0u32..5,
            window_s in 1u64..20,
            ops in ops(),
        ) {
            let b = budget(ratio, min_per_sec, window_s);
            let inner = &b.inner;
            let reserve = f64::from(min_per_sec) * window_s as f64;
            // The model: every admitted event with its bucket number.
            let mut requests: Vec<u64> = Vec::new();
            let mut retries: Vec<u64> = Vec::new();
            let mut now = inner.start;
            for op in ops {
                let epoch = inner.epoch(now);
                let in_window = |e: &&u64| **e + BUCKETS > epoch;
                match op {
                    Op::Deposit => {
                        inner.deposit(now);
                        requests.push(epoch);
                    }
                    Op::Withdraw => {
                        let q = requests.iter().filter(in_window).count() as f64;
                        let t = retries.iter().filter(in_window).count() as f64;
                        let expected = t + 1.0 <= ratio.mul_add(q, reserve);
                        prop_assert_eq!(inner.try_withdraw(now).is_some(), expected);
                        if expected {
                            retries.push(epoch);
                        }
                    }
                    Op::Advance(ms) => now += Duration::from_millis(ms),
                }
                // The budget's counts are the model's, over the same window.
                let epoch = inner.epoch(now);
                let q = requests.iter().filter(|e| **e + BUCKETS > epoch).count() as u64;
                let t = retries.iter().filter(|e| **e + BUCKETS > epoch).count() as u64;
                prop_assert_eq!(b.counts_at(now), (q, t));
            }
        }
    }

    impl RetryBudget {
        fn counts_at(&self, now: Instant) -> (u64, u64) {
            let (q, t, _) = self.inner.sums(self.inner.epoch(now));
            (q, t)
        }
    }
}
