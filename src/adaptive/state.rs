//! The shared state of one adaptive limiter: the limit, the calls in
//! flight and the current window's accumulators, all atomics.
//!
//! A call takes a permit with a compare-and-swap on the count in flight
//! against the current limit. When it ends it adds its round-trip time to
//! the window's sums; the first call to end after the window is over (and
//! has enough samples) wins a flag, takes the sums with swaps, computes the
//! next limit and stores it. No call waits for it: a call that loses the
//! flag carries on, and samples added during the update count in the next
//! window.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::algorithm::{Algorithm, Verdict, Window, next_limit, probe_permits};
use super::throttle::ThrottleState;
use crate::event::LimitReason;

/// An `f64` kept as the bits of an `AtomicU64`.
#[derive(Debug)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn new(value: f64) -> Self {
        Self(AtomicU64::new(value.to_bits()))
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

/// The settings a limiter is made from.
#[derive(Debug, Clone)]
pub(crate) struct LimiterSettings {
    pub(crate) algorithm: Algorithm,
    pub(crate) initial: usize,
    pub(crate) min: usize,
    pub(crate) max: usize,
    pub(crate) window: Duration,
    pub(crate) min_samples: u64,
    pub(crate) throttle: Option<super::Throttle>,
    pub(crate) name: Cow<'static, str>,
}

/// How a call ended, for the limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The dependency answered (a success or a functional error).
    Answered,
    /// It failed or timed out.
    Dropped,
    /// Something before it refused the call: no sample.
    Ignored,
}

/// One limiter, shared by every service, clone and handle made from the
/// same layer (or by every call with the same key).
pub(crate) struct Limiter {
    algorithm: Algorithm,
    min: usize,
    max: usize,
    window_nanos: u64,
    min_samples: u64,
    probe_nanos: u64,
    name: Cow<'static, str>,
    /// The key, as events name it, of one key's limiter in a keyed layer
    /// (formatted once, when the key is first stored).
    key: Option<Box<str>>,
    start: Instant,
    throttle: Option<ThrottleState>,

    /// The calls admitted at once now: the limit, or the minimum while the
    /// no-load round-trip time is measured.
    permits: AtomicUsize,
    in_flight: AtomicUsize,
    limit: AtomicF64,

    // The current window.
    window_start: AtomicU64,
    rtt_sum: AtomicU64,
    samples: AtomicU64,
    drops: AtomicU64,
    max_in_flight: AtomicU64,
    updating: AtomicBool,

    // Written only by the caller that won `updating`.
    min_rtt: AtomicF64,
    last_rtt: AtomicF64,
    stale: AtomicU32,
    last_probe: AtomicU64,
    probing: AtomicBool,
    /// Bumped when a probe starts: only calls admitted during the probe
    /// measure it.
    epoch: AtomicU32,
    saved_limit: AtomicF64,

    #[cfg(feature = "metrics")]
    gauges: crate::event::metrics::AdaptiveGauges,
    /// The series of its refusals and limit changes.
    pub(crate) decisions: crate::event::Decisions,
}

impl Limiter {
    pub(crate) fn new(settings: &LimiterSettings) -> Self {
        let probe = match settings.algorithm {
            Algorithm::Gradient(g) => Some(g.probe_interval),
            Algorithm::Aimd(_) => None,
        };
        // The gradient starts by measuring the no-load round-trip time.
        let probing = probe.is_some();
        #[allow(clippy::cast_precision_loss)]
        let initial = settings.initial as f64;
        let limiter = Self {
            algorithm: settings.algorithm,
            min: settings.min,
            max: settings.max,
            window_nanos: nanos(settings.window),
            min_samples: settings.min_samples,
            probe_nanos: probe.map_or(u64::MAX, nanos),
            name: settings.name.clone(),
            key: None,
            start: Instant::now(),
            throttle: settings.throttle.as_ref().map(ThrottleState::new),
            permits: AtomicUsize::new(if probing {
                settings.min
            } else {
                settings.initial
            }),
            in_flight: AtomicUsize::new(0),
            limit: AtomicF64::new(initial),
            window_start: AtomicU64::new(0),
            rtt_sum: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            updating: AtomicBool::new(false),
            min_rtt: AtomicF64::new(f64::NAN),
            last_rtt: AtomicF64::new(f64::NAN),
            stale: AtomicU32::new(0),
            last_probe: AtomicU64::new(0),
            probing: AtomicBool::new(probing),
            epoch: AtomicU32::new(0),
            saved_limit: AtomicF64::new(initial),
            #[cfg(feature = "metrics")]
            gauges: crate::event::metrics::AdaptiveGauges::register(&settings.name),
            decisions: crate::event::Decisions::new(),
        };
        #[cfg(feature = "metrics")]
        limiter.gauges.limit(limiter.limit());
        limiter
    }

    fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.start))
    }

    /// Counts the call with the throttle, if any; `false` refuses it.
    #[inline]
    pub(crate) fn throttle_admits(&self) -> bool {
        match &self.throttle {
            Some(throttle) => throttle.admit(self.now()),
            None => true,
        }
    }

    /// Takes a place if the limit allows one more call.
    #[inline]
    fn try_take(&self) -> bool {
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            if current >= self.permits.load(Ordering::Relaxed) {
                return false;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        self.max_in_flight
            .fetch_max(current as u64 + 1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.gauges.in_flight.increment(1.0);
        true
    }

    /// Records one ended call, and closes the window if it is over.
    fn record(&self, rtt: Duration, epoch: u32, outcome: Outcome) {
        let now = self.now();
        if let Some(throttle) = &self.throttle {
            throttle.ended(now, outcome == Outcome::Answered);
        }
        let probing = self.probing.load(Ordering::Acquire);
        if probing && epoch != self.epoch.load(Ordering::Acquire) {
            // Admitted before the probe, at a higher concurrency.
            return;
        }
        let mut outcome = outcome;
        if let Algorithm::Aimd(a) = self.algorithm {
            if outcome == Outcome::Answered && rtt > a.drop_rtt {
                outcome = Outcome::Dropped;
            }
        }
        match outcome {
            Outcome::Answered => {
                // Capped at an hour, so that the sum cannot wrap in any
                // window real calls fill.
                let sample = nanos(rtt).min(3_600_000_000_000);
                self.rtt_sum.fetch_add(sample, Ordering::Relaxed);
                self.samples.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Dropped => {
                self.drops.fetch_add(1, Ordering::Relaxed);
                if !probing {
                    self.shed_permit();
                }
            }
            Outcome::Ignored => return,
        }
        let seen = self.samples.load(Ordering::Relaxed) + self.drops.load(Ordering::Relaxed);
        if seen < self.min_samples {
            return;
        }
        let elapsed = now.saturating_sub(self.window_start.load(Ordering::Relaxed));
        if !probing && elapsed < self.window_nanos {
            return;
        }
        if self.updating.swap(true, Ordering::Acquire) {
            return; // another call is closing the window
        }
        self.close_window(now, probing);
        self.updating.store(false, Ordering::Release);
    }

    /// Gives up one permit at once, down to half the limit: a dependency
    /// that sheds load fails fast, and every call over its capacity would
    /// fail until the window closes.
    fn shed_permit(&self) {
        // Half the limit, rounded down, within [min, max].
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let floor = ((self.limit.get() * 0.5) as usize).max(self.min);
        let _ = self
            .permits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |permits| {
                (permits > floor).then(|| permits - 1)
            });
    }

    /// Takes the window's sums and moves the limit. Only the caller that
    /// won `updating` runs this.
    #[cold]
    fn close_window(&self, now: u64, probing: bool) {
        let rtt_sum = self.rtt_sum.swap(0, Ordering::Relaxed);
        let samples = self.samples.swap(0, Ordering::Relaxed);
        let drops = self.drops.swap(0, Ordering::Relaxed);
        let in_flight = self.in_flight.load(Ordering::Relaxed) as u64;
        let max_in_flight = self.max_in_flight.swap(in_flight, Ordering::Relaxed);
        self.window_start.store(now, Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)]
        let rtt = if samples == 0 {
            f64::NAN
        } else {
            rtt_sum as f64 / samples as f64 / 1e9
        };
        if samples > 0 {
            self.last_rtt.set(rtt);
        }
        let before = self.permits();
        if probing {
            if samples > 0 {
                self.min_rtt.set(rtt);
            }
            self.last_probe.store(now, Ordering::Relaxed);
            self.probing.store(false, Ordering::Release);
            self.set_limit(self.saved_limit.get(), before, LimitReason::ProbeDone);
            return;
        }
        let window = Window {
            rtt,
            samples,
            drops,
            max_in_flight,
        };
        let mut stale = self.stale.load(Ordering::Relaxed);
        // Permits shed by drops since the last window lower the limit.
        #[allow(clippy::cast_precision_loss)]
        let current = self
            .limit
            .get()
            .min(self.permits.load(Ordering::Relaxed) as f64 + 0.999);
        #[allow(clippy::cast_precision_loss)]
        let (next, verdict) = next_limit(
            &self.algorithm,
            current,
            self.min as f64,
            self.max as f64,
            self.min_rtt.get(),
            &window,
            &mut stale,
        );
        self.stale.store(stale, Ordering::Relaxed);
        let min_rtt = self.min_rtt.get();
        // The calls in flight that made this window's round-trip time.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let in_use =
            (current.floor() as usize).min(usize::try_from(max_in_flight).unwrap_or(usize::MAX));
        if samples > 0 && (min_rtt.is_nan() || rtt < min_rtt) {
            // A lower round-trip time is adopted at once, after it was
            // compared with the old one.
            self.min_rtt.set(rtt);
        }
        let probe_due =
            now.saturating_sub(self.last_probe.load(Ordering::Relaxed)) >= self.probe_nanos;
        if matches!(self.algorithm, Algorithm::Gradient(_))
            && (verdict == Verdict::Probe || probe_due)
        {
            self.limit.set(next);
            self.saved_limit.set(next);
            let permits = probe_permits(in_use, self.min, min_rtt, rtt);
            self.epoch.fetch_add(1, Ordering::AcqRel);
            self.probing.store(true, Ordering::Release);
            self.permits.store(permits, Ordering::Relaxed);
            super::emit_limit(self, before, permits, LimitReason::Probe);
            return;
        }
        self.set_limit(next, before, LimitReason::Window);
    }

    fn set_limit(&self, next: f64, before: usize, reason: LimitReason) {
        self.limit.set(next);
        let permits = self.limit();
        self.permits.store(permits, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.gauges.limit(permits);
        if permits != before {
            super::emit_limit(self, before, permits, reason);
        }
    }

    /// The current limit (while probing, the one that resumes after it).
    pub(crate) fn limit(&self) -> usize {
        // The limit is within [min, max], both usize.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let limit = self.limit.get().floor() as usize;
        limit.clamp(self.min, self.max)
    }

    /// The calls admitted at once now.
    pub(crate) fn permits(&self) -> usize {
        self.permits.load(Ordering::Relaxed)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn probing(&self) -> bool {
        self.probing.load(Ordering::Relaxed)
    }

    pub(crate) fn min_rtt(&self) -> Option<Duration> {
        duration(self.min_rtt.get())
    }

    pub(crate) fn last_rtt(&self) -> Option<Duration> {
        duration(self.last_rtt.get())
    }

    pub(crate) fn throttle_probability(&self) -> Option<f64> {
        self.throttle.as_ref().map(|t| t.probability(self.now()))
    }

    pub(crate) fn throttle_counts(&self) -> Option<(u64, u64)> {
        self.throttle.as_ref().map(|t| t.counts(self.now()))
    }

    pub(crate) fn min(&self) -> usize {
        self.min
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn algorithm(&self) -> &'static str {
        self.algorithm.as_str()
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// This limiter as the limiter of the key events name `key`.
    pub(crate) fn with_key(mut self, key: Box<str>) -> Self {
        self.key = Some(key);
        self
    }

    /// The key, as events name it, of one key's limiter in a keyed layer.
    pub(crate) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn duration(seconds: f64) -> Option<Duration> {
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(1e9)))
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm.as_str())
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("min_rtt", &self.min_rtt())
            .field("probing", &self.probing())
            .finish()
    }
}

/// A limiter with the classifier that judges its calls: what a layer (or
/// one key of a keyed layer) shares.
pub(crate) struct Node<C> {
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) classifier: C,
}

impl<C> Node<C> {
    pub(crate) fn new(limiter: Limiter, classifier: C) -> Self {
        Self {
            limiter: Arc::new(limiter),
            classifier,
        }
    }

    /// Takes a permit if the limit allows one more call.
    #[inline]
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit<C>> {
        if !self.limiter.try_take() {
            return None;
        }
        Some(Permit {
            node: Arc::clone(self),
            start: Instant::now(),
            epoch: self.limiter.epoch.load(Ordering::Relaxed),
            outcome: Outcome::Ignored,
        })
    }
}

impl<C> fmt::Debug for Node<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.limiter.fmt(f)
    }
}

/// A permit to have one call in flight: when dropped it records the call's
/// outcome (nothing if the call never ended) and frees its place.
pub(crate) struct Permit<C> {
    node: Arc<Node<C>>,
    start: Instant,
    epoch: u32,
    outcome: Outcome,
}

impl<C> Permit<C> {
    /// The classifier of the call's limiter.
    pub(crate) fn classifier(&self) -> &C {
        &self.node.classifier
    }

    /// Sets how the call ended; recorded when the permit is dropped.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.outcome = outcome;
    }
}

impl<C> Drop for Permit<C> {
    fn drop(&mut self) {
        let limiter = &self.node.limiter;
        limiter.in_flight.fetch_sub(1, Ordering::AcqRel);
        #[cfg(feature = "metrics")]
        limiter.gauges.in_flight.decrement(1.0);
        limiter.record(self.start.elapsed(), self.epoch, self.outcome);
    }
}

impl<C> fmt::Debug for Permit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("limiter", &self.node.limiter.name)
            .finish()
    }
}
