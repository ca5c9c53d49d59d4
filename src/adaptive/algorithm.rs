//! The limit algorithms: pure functions from one window's measurements to
//! the next limit, so that their bounds can be checked on their own.

use std::time::Duration;

use crate::error::{ConfigError, check};

/// The lowest and highest factor a gradient window may apply, as Envoy's
/// adaptive concurrency filter clamps it.
const GRADIENT_FLOOR: f64 = 0.5;
const GRADIENT_CEILING: f64 = 2.0;

/// A window whose mean round-trip time is below this share of the no-load
/// one says the dependency sped up: the no-load round-trip time is
/// measured again. Under load a window's mean is at least the no-load
/// round-trip time, so only jitter puts it a little below.
const SPED_UP: f64 = 0.9;

/// The share of the limit a probe admits at most.
const PROBE_SHARE: f64 = 0.5;

/// A gradient controller over a re-measured minimum round-trip time, in the
/// manner of Envoy's adaptive concurrency filter and Netflix's Gradient2.
///
/// Each window it computes `gradient = clamp(min_rtt × tolerance / rtt,
/// 0.5, 2)` and moves the limit a `smoothing` share of the way towards
/// `limit × gradient + √limit`. Below the dependency's capacity the
/// round-trip time is the no-load one, the gradient is above one and the
/// limit grows; above it calls queue, the round-trip time grows in
/// proportion and the limit falls back. It settles at about the capacity
/// plus `√capacity` calls of queue.
///
/// The no-load round-trip time is measured by lowering the calls admitted
/// until `min_samples` calls admitted at that concurrency have completed:
/// at the start, every `probe_interval`, when three windows in a row saw
/// more than twice the minimum (the dependency slowed down, or the limit
/// is far too high) and when a window saw less than nine tenths of it (the
/// dependency sped up). The first probe admits `min_limit` calls; later
/// ones admit `limit × min(min_rtt / rtt, ½)` (at least `min_limit`),
/// where `rtt` is the last window's: by Little's law, no more than the
/// dependency served without queueing in that window, so that a probe
/// measures no queue but does not idle the capacity it still has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gradient {
    pub(crate) tolerance: f64,
    pub(crate) smoothing: f64,
    pub(crate) probe_interval: Duration,
}

impl Default for Gradient {
    fn default() -> Self {
        Self::new()
    }
}

impl Gradient {
    /// The defaults: tolerance 1.0, smoothing 0.2, a probe every 10 s.
    ///
    /// - Tolerance 1.0: any queueing counts against the limit, so that the
    ///   limit settles at the capacity plus √capacity rather than a fixed
    ///   share above it (Envoy's 25 % buffer would settle 40 % above a
    ///   capacity of 40).
    /// - Smoothing 0.2, Netflix Gradient2's: one noisy window moves the
    ///   limit by a fifth of what it asks.
    /// - A probe every 10 s, BBR's `ProbeRTT` period: a periodic probe
    ///   admits half the limit for about two round-trip times, a loss of
    ///   one round-trip time's worth of calls every 10 s.
    pub const fn new() -> Self {
        Self {
            tolerance: 1.0,
            smoothing: 0.2,
            probe_interval: Duration::from_secs(10),
        }
    }

    /// How much above the minimum round-trip time a window may be before the
    /// limit shrinks (default 1.0, at least 1).
    pub const fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The share of the way to its target the limit moves each window
    /// (default 0.2, in `(0, 1]`).
    pub const fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// How often the no-load round-trip time is measured again (default
    /// 10 s).
    pub const fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if !(self.tolerance >= 1.0 && self.tolerance <= 100.0) {
            return Err(ConfigError::new(
                "adaptive.gradient.tolerance",
                self.tolerance,
                "must be in [1, 100]",
            ));
        }
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return Err(ConfigError::new(
                "adaptive.gradient.smoothing",
                self.smoothing,
                "must be in (0, 1]",
            ));
        }
        check::positive("adaptive.gradient.probe_interval", self.probe_interval)?;
        Ok(())
    }
}

/// Additive increase, multiplicative decrease, as TCP's congestion
/// avoidance and Netflix's AIMD limit.
///
/// A window with a dropped call (a failure, a timeout, or a call slower
/// than `drop_rtt`) multiplies the limit by `backoff`; a window without one
/// in which at least half the limit was in use adds `increase`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aimd {
    pub(crate) increase: f64,
    pub(crate) backoff: f64,
    pub(crate) drop_rtt: Duration,
}

impl Default for Aimd {
    fn default() -> Self {
        Self::new()
    }
}

impl Aimd {
    /// The defaults: add 1 per window, back off to 0.9, calls slower than
    /// 5 s count as dropped (Netflix AIMD's defaults).
    pub const fn new() -> Self {
        Self {
            increase: 1.0,
            backoff: 0.9,
            drop_rtt: Duration::from_secs(5),
        }
    }

    /// What a window without drops adds (default 1, in `(0, 1000]`).
    pub const fn increase(mut self, increase: f64) -> Self {
        self.increase = increase;
        self
    }

    /// What a window with a drop multiplies the limit by (default 0.9, in
    /// `[0.5, 1)`).
    pub const fn backoff(mut self, backoff: f64) -> Self {
        self.backoff = backoff;
        self
    }

    /// A call slower than this counts as dropped (default 5 s).
    pub const fn drop_rtt(mut self, rtt: Duration) -> Self {
        self.drop_rtt = rtt;
        self
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if !(self.increase > 0.0 && self.increase <= 1_000.0) {
            return Err(ConfigError::new(
                "adaptive.aimd.increase",
                self.increase,
                "must be in (0, 1000]",
            ));
        }
        if !(self.backoff >= 0.5 && self.backoff < 1.0) {
            return Err(ConfigError::new(
                "adaptive.aimd.backoff",
                self.backoff,
                "must be in [0.5, 1)",
            ));
        }
        check::positive("adaptive.aimd.drop_rtt", self.drop_rtt)?;
        Ok(())
    }
}

/// Which algorithm moves the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Algorithm {
    /// See [`Gradient`].
    Gradient(Gradient),
    /// See [`Aimd`].
    Aimd(Aimd),
}

impl Default for Algorithm {
    fn default() -> Self {
        Algorithm::Gradient(Gradient::new())
    }
}

impl Algorithm {
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        match self {
            Algorithm::Gradient(g) => g.check(),
            Algorithm::Aimd(a) => a.check(),
        }
    }

    pub(crate) const fn as_str(&self) -> &'static str {
        match self {
            Algorithm::Gradient(_) => "gradient",
            Algorithm::Aimd(_) => "aimd",
        }
    }
}

/// What one window measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    /// Mean round-trip time of the window's answered calls, in seconds.
    pub(crate) rtt: f64,
    /// Answered calls.
    pub(crate) samples: u64,
    /// Dropped calls (failures, timeouts, calls over `drop_rtt`).
    pub(crate) drops: u64,
    /// The most calls in flight at once during the window.
    pub(crate) max_in_flight: u64,
}

/// What a window asks of the limiter besides a new limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Carry on.
    Steady,
    /// The minimum round-trip time looks stale: measure it again.
    Probe,
}

/// The limit after `window`, within `[min, max]`, and whether to probe.
///
/// `min_rtt` is the no-load round-trip time in seconds; `stale` counts the
/// windows in a row that saw more than twice it (kept by the caller).
pub(crate) fn next_limit(
    algorithm: &Algorithm,
    limit: f64,
    min: f64,
    max: f64,
    min_rtt: f64,
    window: &Window,
    stale: &mut u32,
) -> (f64, Verdict) {
    let limit = sane(limit, min, max);
    let rtt = window.rtt;
    let total = window.samples.saturating_add(window.drops).max(1);
    // Precision loss only past 2^52 calls in one window.
    #[allow(clippy::cast_precision_loss)]
    let drop_share = (window.drops as f64 / total as f64).clamp(0.0, 1.0);
    #[allow(clippy::cast_precision_loss)]
    let in_use = window.max_in_flight as f64;
    let app_limited = in_use * 2.0 < limit;
    match algorithm {
        Algorithm::Gradient(g) => {
            if !(rtt.is_finite() && rtt > 0.0 && min_rtt.is_finite() && min_rtt > 0.0) {
                // Nothing answered: only drops can move the limit.
                let next = if window.drops > 0 {
                    limit * (1.0 - drop_share / 2.0)
                } else {
                    limit
                };
                return (sane(next, min, max), Verdict::Steady);
            }
            let raw = min_rtt * g.tolerance / rtt;
            let mut verdict = Verdict::Steady;
            if raw <= GRADIENT_FLOOR {
                *stale = stale.saturating_add(1);
                if *stale >= 3 {
                    *stale = 0;
                    verdict = Verdict::Probe;
                }
            } else {
                *stale = 0;
            }
            if rtt < min_rtt * SPED_UP {
                verdict = Verdict::Probe;
            }
            let gradient = raw.clamp(GRADIENT_FLOOR, GRADIENT_CEILING);
            let mut target = if app_limited && gradient >= 1.0 {
                // Not using the limit: no evidence it could be higher.
                limit
            } else {
                limit.mul_add(gradient, limit.sqrt())
            };
            if window.drops > 0 {
                target = target.min(limit * (1.0 - drop_share / 2.0));
            }
            let next = limit.mul_add(1.0 - g.smoothing, target * g.smoothing);
            (sane(next, min, max), verdict)
        }
        Algorithm::Aimd(a) => {
            let next = if window.drops > 0 {
                limit * a.backoff
            } else if app_limited {
                limit
            } else {
                limit + a.increase
            };
            (sane(next, min, max), Verdict::Steady)
        }
    }
}

/// The calls a probe admits: `limit × min(min_rtt / rtt, ½)`, within
/// `[min, limit]`, or `min` when either round-trip time is unknown.
///
/// While the window's calls queued, the dependency served about
/// `limit × no_load / rtt` of them at once; `min_rtt` is at most the
/// no-load round-trip time when it has slowed down (the probe is there to
/// learn by how much), so that many calls meet no queue. When the
/// round-trip time did not grow that much (a periodic probe, or the
/// dependency sped up), half the limit is below the capacity unless the
/// limit is more than twice it.
pub(crate) fn probe_permits(limit: usize, min: usize, min_rtt: f64, rtt: f64) -> usize {
    let limit = limit.max(min);
    if !(min_rtt.is_finite() && min_rtt > 0.0 && rtt.is_finite() && rtt > 0.0) {
        return min;
    }
    let share = (min_rtt / rtt).min(PROBE_SHARE);
    // Precision loss only for limits past 2^52; the product is within
    // [0, limit].
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let permits = (limit as f64 * share).floor() as usize;
    permits.clamp(min, limit)
}

/// `value` within `[min, max]`, with NaN taken as `min`.
fn sane(value: f64, min: f64, max: f64) -> f64 {
    if value.is_nan() {
        min
    } else {
        value.clamp(min, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window(rtt: f64, samples: u64, drops: u64, max_in_flight: u64) -> Window {
        Window {
            rtt,
            samples,
            drops,
            max_in_flight,
        }
    }

    #[test]
    fn gradient_grows_below_capacity_and_shrinks_above_it() {
        let g = Algorithm::Gradient(Gradient::new());
        let mut stale = 0;
        let (up, _) = next_limit(
            &g,
            20.0,
            1.0,
            1000.0,
            0.05,
            &window(0.05, 100, 0, 20),
            &mut stale,
        );
        assert!(up > 20.0, "{up}");
        let (down, _) = next_limit(
            &g,
            80.0,
            1.0,
            1000.0,
            0.05,
            &window(0.1, 100, 0, 80),
            &mut stale,
        );
        assert!(down < 80.0, "{down}");
    }

    #[test]
    fn gradient_asks_for_a_probe_after_three_slow_windows_or_one_fast_one() {
        let g = Algorithm::Gradient(Gradient::new());
        let mut stale = 0;
        let slow = window(0.2, 100, 0, 40);
        for _ in 0..2 {
            assert_eq!(
                next_limit(&g, 40.0, 3.0, 1000.0, 0.05, &slow, &mut stale).1,
                Verdict::Steady
            );
        }
        assert_eq!(
            next_limit(&g, 40.0, 3.0, 1000.0, 0.05, &slow, &mut stale).1,
            Verdict::Probe
        );
        let fast = window(0.02, 100, 0, 40);
        assert_eq!(
            next_limit(&g, 40.0, 3.0, 1000.0, 0.05, &fast, &mut stale).1,
            Verdict::Probe
        );
    }

    #[test]
    fn an_idle_caller_does_not_raise_its_limit() {
        for algorithm in [
            Algorithm::Gradient(Gradient::new()),
            Algorithm::Aimd(Aimd::new()),
        ] {
            let mut stale = 0;
            let (next, _) = next_limit(
                &algorithm,
                100.0,
                1.0,
                1000.0,
                0.05,
                &window(0.05, 10, 0, 3),
                &mut stale,
            );
            assert!((next - 100.0).abs() < f64::EPSILON, "{algorithm:?}: {next}");
        }
    }

    #[test]
    fn aimd_adds_without_drops_and_backs_off_with_them() {
        let a = Algorithm::Aimd(Aimd::new());
        let mut stale = 0;
        let (up, _) = next_limit(
            &a,
            10.0,
            1.0,
            100.0,
            0.05,
            &window(0.05, 10, 0, 10),
            &mut stale,
        );
        assert!((up - 11.0).abs() < 1e-9);
        let (down, _) = next_limit(
            &a,
            10.0,
            1.0,
            100.0,
            0.05,
            &window(0.05, 10, 1, 10),
            &mut stale,
        );
        assert!((down - 9.0).abs() < 1e-9);
    }

    #[test]
    fn a_probe_admits_what_was_served_without_queueing() {
        // 25 calls took 125 ms where the no-load time was 50 ms: the
        // dependency served 10 at once.
        assert_eq!(probe_permits(25, 3, 0.05, 0.125), 10);
        // A periodic probe, or a faster dependency: half the limit.
        assert_eq!(probe_permits(25, 3, 0.05, 0.06), 12);
        assert_eq!(probe_permits(25, 3, 0.1, 0.06), 12);
        // Never below the minimum; the minimum when nothing is known.
        assert_eq!(probe_permits(8, 3, 0.05, 1.0), 3);
        assert_eq!(probe_permits(1_000, 3, f64::NAN, 0.05), 3);
        assert_eq!(probe_permits(1_000, 3, 0.05, f64::NAN), 3);
        assert_eq!(probe_permits(1_000, 3, 0.05, 0.0), 3);
    }

    #[test]
    fn a_window_a_tenth_below_the_no_load_rtt_asks_for_a_probe() {
        let g = Algorithm::Gradient(Gradient::new());
        let mut stale = 0;
        let w = |rtt| window(rtt, 100, 0, 40);
        // 62 ms under load where the no-load time was 100 ms: the
        // dependency sped up (a mean of 62 ms adopted as the no-load time
        // would keep a queue of a quarter of the calls).
        assert_eq!(
            next_limit(&g, 40.0, 3.0, 1000.0, 0.1, &w(0.062), &mut stale).1,
            Verdict::Probe
        );
        assert_eq!(
            next_limit(&g, 40.0, 3.0, 1000.0, 0.1, &w(0.095), &mut stale).1,
            Verdict::Steady,
            "jitter"
        );
    }

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
            Just(0.0),
            Just(-1.0),
            any::<f64>(),
            0.0..10.0f64,
        ]
    }

    proptest! {
        #[test]
        fn the_limit_stays_within_its_bounds_whatever_is_measured(
            aimd in any::<bool>(),
            limit in any_f64(),
            min in 1u32..100,
            span in 0u32..100_000,
            min_rtt in any_f64(),
            rtt in any_f64(),
            samples in any::<u64>(),
            drops in prop_oneof![Just(0u64), any::<u64>()],
            max_in_flight in any::<u64>(),
            windows in 1usize..20,
        ) {
            let algorithm = if aimd {
                Algorithm::Aimd(Aimd::new())
            } else {
                Algorithm::Gradient(Gradient::new())
            };
            let (min, max) = (f64::from(min), f64::from(min) + f64::from(span));
            let w = window(rtt, samples, drops, max_in_flight);
            let mut stale = 0;
            let mut current = limit;
            for _ in 0..windows {
                let (next, _) = next_limit(&algorithm, current, min, max, min_rtt, &w, &mut stale);
                prop_assert!(next.is_finite(), "{next}");
                prop_assert!(next >= min && next <= max, "{next} not in [{min}, {max}]");
                current = next;
            }
        }

        #[test]
        fn a_probe_admits_between_the_minimum_and_the_limit(
            limit in 0usize..100_000,
            min in 1usize..100,
            min_rtt in any_f64(),
            rtt in any_f64(),
        ) {
            let permits = probe_permits(limit, min, min_rtt, rtt);
            prop_assert!(permits >= min && permits <= limit.max(min), "{permits}");
            prop_assert!(permits <= (limit / 2).max(min), "at most half the limit: {permits}");
        }
    }
}
