//! Backoff: how long to wait before each retry.

use std::fmt;
use std::time::Duration;

use crate::error::{ConfigError, check};

/// How the delay between attempts grows, and how it is randomised.
///
/// The delay before retry `n` (the first retry is `n = 1`) is first the
/// growth's value, then capped, then jittered:
///
/// | growth | value before retry `n` |
/// |---|---|
/// | [`constant`](Backoff::constant) | `base` |
/// | [`linear`](Backoff::linear) | `base × n` |
/// | [`exponential`](Backoff::exponential) | `base × factor^(n−1)` |
///
/// With `ceiling = min(cap, value)`:
///
/// | [`Jitter`] | delay |
/// |---|---|
/// | [`None`](Jitter::None) | `ceiling` |
/// | [`Full`](Jitter::Full) | `random(0, ceiling)` |
/// | [`Equal`](Jitter::Equal) | `ceiling / 2 + random(0, ceiling / 2)` |
/// | [`Decorrelated`](Jitter::Decorrelated) | smoothed decorrelated jitter, in `[0, cap]` |
///
/// The cap defaults to ten times the base. Settings are checked when the
/// retry layer is built.
///
/// ```
/// use std::time::Duration;
/// use steadfast::retry::{Backoff, BackoffState, Jitter};
///
/// let backoff = Backoff::exponential(Duration::from_millis(100))
///     .factor(2.0)
///     .cap(Duration::from_secs(1))
///     .jitter(Jitter::None);
/// let mut state = BackoffState::new();
/// let delays: Vec<_> = (1..=5).map(|n| backoff.delay(n, &mut state, 0.5)).collect();
/// assert_eq!(delays, [100, 200, 400, 800, 1000].map(Duration::from_millis));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    growth: Growth,
    base: Duration,
    cap: Option<Duration>,
    jitter: Jitter,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Growth {
    Constant,
    Linear,
    Exponential { factor: f64 },
}

/// How a backoff delay is randomised, so that clients that failed together
/// do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// The delay is exactly the capped growth value.
    None,
    /// A uniform draw between zero and the capped growth value: the least
    /// work for the callee in published comparisons.
    #[default]
    Full,
    /// Half the capped growth value, plus a uniform draw over the other half.
    Equal,
    /// Decorrelated jitter in its smoothed form: each delay is drawn around
    /// an exponential curve whose randomness carries over from the previous
    /// delay, without the spikes of the classic `random(base, prev × 3)`.
    /// The median first delay is about `base`. Needs exponential growth.
    Decorrelated,
}

/// Polly's scaling, which makes the median first delay equal the base.
const DECORRELATED_SCALE: f64 = 1.0 / 1.4;

/// Retries whose ceilings [`Backoff::max_total`] adds one by one before it
/// sums the rest of a slowly growing exponential in closed form.
const EXACT_TERMS: u32 = 4_096;

fn from_nanos_saturating(nanos: u128) -> Duration {
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    #[allow(clippy::cast_possible_truncation)] // below 10^9
    let subsec = (nanos % 1_000_000_000) as u32;
    if secs == u64::MAX {
        Duration::MAX
    } else {
        Duration::new(secs, subsec)
    }
}

/// What tells two backoffs apart when their settings are interned: their
/// fields, the growth factor by its bits (so that the key is `Eq`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct BackoffKey {
    growth: u8,
    factor: u64,
    base: Duration,
    cap: Option<Duration>,
    jitter: Jitter,
}

impl Backoff {
    /// The key of these settings (see [`BackoffKey`]).
    pub(crate) fn key(&self) -> BackoffKey {
        let (growth, factor) = match self.growth {
            Growth::Constant => (0, 0),
            Growth::Linear => (1, 0),
            Growth::Exponential { factor } => (2, factor.to_bits()),
        };
        BackoffKey {
            growth,
            factor,
            base: self.base,
            cap: self.cap,
            jitter: self.jitter,
        }
    }

    /// The same delay before every retry.
    pub const fn constant(delay: Duration) -> Self {
        Self::with_growth(Growth::Constant, delay)
    }

    /// `base`, `2 × base`, `3 × base`, ...
    pub const fn linear(base: Duration) -> Self {
        Self::with_growth(Growth::Linear, base)
    }

    /// `base`, `2 × base`, `4 × base`, ... (the factor can be changed).
    pub const fn exponential(base: Duration) -> Self {
        Self::with_growth(Growth::Exponential { factor: 2.0 }, base)
    }

    const fn with_growth(growth: Growth, base: Duration) -> Self {
        Self {
            growth,
            base,
            cap: None,
            jitter: Jitter::Full,
        }
    }

    /// The growth factor of an exponential backoff; at least 1. Turns a
    /// constant or linear backoff into an exponential one.
    pub const fn factor(mut self, factor: f64) -> Self {
        self.growth = Growth::Exponential { factor };
        self
    }

    /// The longest delay; at least the base.
    pub const fn cap(mut self, cap: Duration) -> Self {
        self.cap = Some(cap);
        self
    }

    /// How delays are randomised; [`Jitter::Full`] unless set.
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The first delay before randomisation.
    pub const fn base(&self) -> Duration {
        self.base
    }

    /// The longest delay.
    pub fn max_delay(&self) -> Duration {
        self.cap
            .unwrap_or_else(|| self.base.saturating_mul(10))
            .max(self.base)
    }

    /// The largest total of delays that `retries` retries can wait: each
    /// delay at its ceiling. Used to check a backoff against a deadline.
    ///
    /// Computed in closed form once the ceiling reaches the cap (and for
    /// constant and linear growth), so any `retries` is quick; saturates at
    /// [`Duration::MAX`].
    pub fn max_total(&self, retries: u32) -> Duration {
        let cap = self.max_delay();
        match (self.jitter, self.growth) {
            (Jitter::Decorrelated, _) => cap.saturating_mul(retries),
            (_, Growth::Constant) => self.base.min(cap).saturating_mul(retries),
            (_, Growth::Linear) => {
                // base × n stays below the cap for n < cap / base.
                let base = self.base.as_nanos();
                if base == 0 {
                    return Duration::ZERO; // refused by `validate`
                }
                let below = u32::try_from(cap.as_nanos().div_ceil(base) - 1).unwrap_or(u32::MAX);
                let growing = below.min(retries);
                let n = u128::from(growing);
                let sum = from_nanos_saturating(base.saturating_mul(n * (n + 1) / 2));
                sum.saturating_add(cap.saturating_mul(retries - growing))
            }
            (_, Growth::Exponential { factor }) => {
                let mut sum = Duration::ZERO;
                for n in 1..=retries {
                    let ceiling = self.ceiling(n);
                    if ceiling == cap {
                        return sum.saturating_add(cap.saturating_mul(retries - n + 1));
                    }
                    if n > EXACT_TERMS {
                        return sum.saturating_add(self.geometric_rest(factor, n, retries));
                    }
                    sum = sum.saturating_add(ceiling);
                }
                sum
            }
        }
    }

    /// The ceilings of retries `from..=to` of a growth so slow that it has
    /// not reached the cap after [`EXACT_TERMS`] retries: the geometric
    /// series up to the cap, then the cap for each remaining retry.
    fn geometric_rest(&self, factor: f64, from: u32, to: u32) -> Duration {
        let cap = self.max_delay().as_secs_f64();
        let first = self.base.as_secs_f64() * factor.powf(f64::from(from - 1));
        let count = f64::from(to - from + 1);
        if !(factor > 1.0 && first > 0.0) {
            // No growth (a factor of 1), or settings `validate` refuses.
            return Duration::try_from_secs_f64(first.min(cap) * count).unwrap_or(Duration::MAX);
        }
        // Terms below the cap: first × factor^k < cap.
        let below = (cap / first).log(factor).ceil().clamp(0.0, count);
        let growing = first * (factor.powf(below) - 1.0) / (factor - 1.0);
        let secs = cap.mul_add(count - below, growing);
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check::positive("retry.backoff.base", self.base)?;
        if let Some(cap) = self.cap {
            if cap < self.base {
                return Err(ConfigError::conflict(
                    "retry.backoff.cap",
                    cap,
                    "retry.backoff.base",
                    self.base,
                    "the cap must not be below the base",
                ));
            }
        }
        match self.growth {
            Growth::Exponential { factor } if !(factor.is_finite() && factor >= 1.0) => {
                Err(ConfigError::new(
                    "retry.backoff.factor",
                    factor,
                    "must be a finite number of at least 1",
                ))
            }
            Growth::Constant | Growth::Linear if self.jitter == Jitter::Decorrelated => {
                Err(ConfigError::new(
                    "retry.backoff.jitter",
                    self.jitter,
                    "decorrelated jitter needs exponential growth",
                ))
            }
            _ => Ok(()),
        }
    }

    /// The capped growth value before retry `retry` (1-based).
    fn ceiling(&self, retry: u32) -> Duration {
        let cap = self.max_delay();
        let n = retry.max(1);
        let value = match self.growth {
            Growth::Constant => self.base,
            Growth::Linear => self.base.saturating_mul(n),
            Growth::Exponential { factor } => {
                let secs = self.base.as_secs_f64() * factor.powf(f64::from(n - 1));
                Duration::try_from_secs_f64(secs).unwrap_or(cap)
            }
        };
        value.min(cap)
    }

    /// The delay before retry `retry` (1-based), given a uniform random
    /// number `random` in `[0, 1)`. `state` carries what decorrelated jitter
    /// remembers between the retries of one call.
    pub fn delay(&self, retry: u32, state: &mut BackoffState, random: f64) -> Duration {
        let random = if (0.0..1.0).contains(&random) {
            random
        } else {
            0.0
        };
        match self.jitter {
            Jitter::None => self.ceiling(retry),
            Jitter::Full => self.ceiling(retry).mul_f64(random),
            Jitter::Equal => {
                let half = self.ceiling(retry) / 2;
                half + half.mul_f64(random)
            }
            Jitter::Decorrelated => self.decorrelated(retry, state, random),
        }
    }

    fn decorrelated(&self, retry: u32, state: &mut BackoffState, random: f64) -> Duration {
        let cap = self.max_delay();
        let factor = match self.growth {
            Growth::Exponential { factor } => factor,
            Growth::Constant | Growth::Linear => 2.0,
        };
        let t = f64::from(retry.max(1) - 1) + random;
        let next = factor.powf(t) * (4.0 * t).sqrt().tanh();
        if !next.is_finite() {
            // The curve overflowed: the step would be ∞ − ∞. As Polly does,
            // wait the longest delay from here on.
            state.prev = next;
            return cap;
        }
        let step = (next - state.prev).max(0.0);
        state.prev = next;
        let secs = step * DECORRELATED_SCALE * self.base.as_secs_f64();
        Duration::try_from_secs_f64(secs).map_or(cap, |d| d.min(cap))
    }
}

impl Default for Backoff {
    /// Exponential from 100 ms, doubling, capped at 1 s, with full jitter.
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(100))
    }
}

impl fmt::Display for Jitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Jitter::None => "none",
            Jitter::Full => "full",
            Jitter::Equal => "equal",
            Jitter::Decorrelated => "decorrelated",
        })
    }
}

/// What a backoff remembers between the retries of one logical call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BackoffState {
    prev: f64,
}

impl BackoffState {
    /// The state before the first retry.
    pub const fn new() -> Self {
        Self { prev: 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn growth_kinds() {
        let mut s = BackoffState::new();
        let constant = Backoff::constant(ms(50)).jitter(Jitter::None);
        assert_eq!(constant.delay(7, &mut s, 0.3), ms(50));
        let linear = Backoff::linear(ms(50)).cap(ms(120)).jitter(Jitter::None);
        let got: Vec<_> = (1..=4).map(|n| linear.delay(n, &mut s, 0.0)).collect();
        assert_eq!(got, [ms(50), ms(100), ms(120), ms(120)]);
        let exp = Backoff::exponential(ms(10))
            .factor(3.0)
            .jitter(Jitter::None);
        let got: Vec<_> = (1..=4).map(|n| exp.delay(n, &mut s, 0.0)).collect();
        assert_eq!(got, [ms(10), ms(30), ms(90), ms(100)]);
    }

    #[test]
    fn jitter_kinds_at_known_draws() {
        let mut s = BackoffState::new();
        let b = Backoff::constant(ms(100));
        assert_eq!(b.jitter(Jitter::Full).delay(1, &mut s, 0.25), ms(25));
        assert_eq!(b.jitter(Jitter::Equal).delay(1, &mut s, 0.5), ms(75));
        assert_eq!(b.jitter(Jitter::Equal).delay(1, &mut s, 0.0), ms(50));
    }

    #[test]
    fn decorrelated_median_first_delay_is_near_base() {
        let b = Backoff::exponential(ms(100))
            .cap(ms(100_000))
            .jitter(Jitter::Decorrelated);
        // The draw 0.5 gives the median of the first delay.
        let first = b.delay(1, &mut BackoffState::new(), 0.5);
        assert!(first > ms(80) && first < ms(120), "{first:?}");
    }

    #[test]
    fn bad_settings_are_refused() {
        assert_eq!(
            Backoff::constant(Duration::ZERO)
                .validate()
                .unwrap_err()
                .field(),
            "retry.backoff.base"
        );
        let err = Backoff::linear(ms(100)).cap(ms(10)).validate().unwrap_err();
        assert_eq!(err.field(), "retry.backoff.cap");
        assert_eq!(err.other(), Some(("retry.backoff.base", "100ms")));
        for factor in [0.5, f64::NAN, f64::INFINITY] {
            let err = Backoff::exponential(ms(1))
                .factor(factor)
                .validate()
                .unwrap_err();
            assert_eq!(err.field(), "retry.backoff.factor");
        }
        let err = Backoff::linear(ms(1))
            .jitter(Jitter::Decorrelated)
            .validate()
            .unwrap_err();
        assert_eq!(err.field(), "retry.backoff.jitter");
    }

    #[test]
    fn max_total_of_every_retry_a_u32_can_count_is_quick() {
        let s = Duration::from_secs;
        let n = u32::MAX;
        let cases = [
            (Backoff::constant(ms(100)), ms(100).saturating_mul(n)),
            (
                Backoff::exponential(ms(100)).cap(s(8)),
                ms(12_700) + s(8).saturating_mul(n - 7),
            ),
            (
                Backoff::exponential(ms(100)).jitter(Jitter::Decorrelated),
                s(1).saturating_mul(n),
            ),
            (
                Backoff::linear(Duration::from_nanos(1)).cap(Duration::MAX),
                Duration::from_nanos(u64::from(n) * (u64::from(n) + 1) / 2),
            ),
            (
                Backoff::linear(ms(1)).cap(ms(10)),
                ms(45) + ms(10).saturating_mul(n - 9),
            ),
        ];
        for (backoff, total) in cases {
            assert_eq!(backoff.max_total(n), total, "{backoff:?}");
        }
        // Growth so slow that the cap is never reached: the closed form.
        let slow = Backoff::exponential(Duration::from_nanos(1))
            .factor(1.000_000_01)
            .cap(Duration::MAX);
        let total = slow.max_total(n).as_secs_f64();
        let exact = (1.000_000_01f64.powf(f64::from(n)) - 1.0) / 1e-8 * 1e-9;
        assert!((total / exact - 1.0).abs() < 1e-6, "{total} vs {exact}");
        // No growth at all: still quick, still exact.
        let flat = Backoff::exponential(ms(2)).factor(1.0).cap(s(1));
        assert_eq!(flat.max_total(n), ms(2).saturating_mul(n));
        // Settings `validate` refuses must not panic either.
        for bad in [
            Backoff::linear(Duration::ZERO),
            Backoff::exponential(Duration::ZERO).cap(s(1)),
            Backoff::exponential(ms(1)).factor(f64::NAN),
            Backoff::exponential(ms(1)).factor(0.5),
        ] {
            let _ = bad.max_total(n);
        }
        // The exact sum agrees with adding the terms one by one.
        for backoff in [slow, Backoff::exponential(ms(3)).factor(1.5).cap(s(3600))] {
            for retries in [0, 1, 2, 7, 100, 5_000] {
                let by_terms =
                    (1..=retries).fold(Duration::ZERO, |sum, r| sum + backoff.ceiling(r));
                let closed = backoff.max_total(retries);
                let diff = closed.abs_diff(by_terms).as_secs_f64();
                assert!(
                    diff <= by_terms.as_secs_f64().mul_add(1e-9, 1e-9),
                    "{retries}: {closed:?} vs {by_terms:?}"
                );
            }
        }
    }

    #[test]
    fn decorrelated_returns_the_cap_once_its_curve_overflows() {
        let cap = Duration::from_secs(30);
        for (factor, retries) in [(2.0, [1_100, 5_000, u32::MAX]), (1e10, [33, 40, 1_000])] {
            let b = Backoff::exponential(ms(100))
                .factor(factor)
                .cap(cap)
                .jitter(Jitter::Decorrelated);
            let mut state = BackoffState::new();
            for retry in retries {
                assert_eq!(
                    b.delay(retry, &mut state, 0.5),
                    cap,
                    "factor {factor}, retry {retry}"
                );
            }
        }
    }

    fn any_backoff() -> impl Strategy<Value = Backoff> {
        let growth = prop_oneof![
            Just(Growth::Constant),
            Just(Growth::Linear),
            (1.0f64..10.0).prop_map(|factor| Growth::Exponential { factor }),
        ];
        let jitter = prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated),
        ];
        (growth, 1u64..10_000_000, 1u64..1_000, jitter).prop_filter_map(
            "valid settings",
            |(growth, base_us, cap_mult, jitter)| {
                let base = Duration::from_micros(base_us);
                let b = Backoff {
                    growth,
                    base,
                    cap: Some(base.saturating_mul(cap_mult as u32)),
                    jitter,
                };
                b.validate().ok().map(|()| b)
            },
        )
    }

    proptest! {
        #[test]
        fn every_delay_stays_within_zero_and_cap(
            backoff in any_backoff(),
            draws in proptest::collection::vec(0.0f64..1.0, 1..40),
        ) {
            let mut state = BackoffState::new();
            let cap = backoff.max_delay();
            for (i, draw) in draws.iter().enumerate() {
                let retry = i as u32 + 1;
                let d = backoff.delay(retry, &mut state, *draw);
                prop_assert!(d <= cap, "retry {retry}: {d:?} > cap {cap:?}");
                if backoff.jitter != Jitter::Decorrelated {
                    prop_assert!(d <= backoff.ceiling(retry));
                }
                if backoff.jitter == Jitter::Equal {
                    prop_assert!(d >= backoff.ceiling(retry) / 2);
                }
            }
        }

        #[test]
        fn decorrelated_reaches_the_cap_and_stays_there_however_far_it_goes(
            base_ms in 1u64..1_000,
            factor in prop_oneof![1.1f64..4.0, 4.0f64..1e12],
            first in 1u32..u32::MAX - 64,
            cap_s in 1u64..100_000,
        ) {
            let base = Duration::from_millis(base_ms);
            let cap = Duration::from_secs(cap_s).max(base);
            let b = Backoff::exponential(base).factor(factor).cap(cap).jitter(Jitter::Decorrelated);
            let mut state = BackoffState::new();
            for retry in first..first + 64 {
                let d = b.delay(retry, &mut state, 0.5);
                prop_assert!(d <= cap);
                // With equal draws, the step before retry n is at least
                // f(n - 1/2) × (1 - 1/factor) × tanh(√2), scaled; in logs,
                // so that nothing overflows here either.
                let t = f64::from(retry) - 1.5;
                let log_step = (DECORRELATED_SCALE * base.as_secs_f64()).ln()
                    + t * factor.ln() + (1.0 - 1.0 / factor).ln() + 2f64.sqrt().tanh().ln();
                if retry > first && log_step > cap.as_secs_f64().ln() + 1e-6 {
                    prop_assert_eq!(d, cap, "retry {}", retry);
                }
            }
        }

        #[test]
        fn decorrelated_stays_within_its_curve(
            base_ms in 1u64..1_000,
            factor in 1.0f64..4.0,
            draws in proptest::collection::vec(0.0f64..1.0, 1..20),
        ) {
            // The step before retry n lies between 0 and
            // f(n) - f(n - 2) of the curve f(t) = factor^t · tanh(√(4t)),
            // scaled, then capped.
            let base = Duration::from_millis(base_ms);
            let b = Backoff::exponential(base).factor(factor).cap(Duration::from_secs(3600)).jitter(Jitter::Decorrelated);
            let f = |t: f64| if t <= 0.0 { 0.0 } else { factor.powf(t) * (4.0 * t).sqrt().tanh() };
            let mut state = BackoffState::new();
            for (i, draw) in draws.iter().enumerate() {
                let n = i as f64 + 1.0;
                let d = b.delay(i as u32 + 1, &mut state, *draw);
                let upper = (f(n) - f(n - 2.0)) * DECORRELATED_SCALE * base.as_secs_f64();
                prop_assert!(d.as_secs_f64() <= upper.min(3600.0).mul_add(1.0 + 1e-9, 1e-9),
                    "retry {}: {:?} above {}", i + 1, d, upper);
            }
        }
    }
}
