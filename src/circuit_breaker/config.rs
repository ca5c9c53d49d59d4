//! The builder shared by the plain and the keyed breaker, and its checks.

use std::borrow::Cow;
use std::time::Duration;

use crate::classify::DefaultClassifier;
use crate::error::{ConfigError, check};
use crate::event::TransitionReason;

/// The largest count window: the window's running totals keep 21 bits per
/// field.
pub(crate) const MAX_COUNT_WINDOW: u64 = 1_000_000;
/// The largest number of half-open probes: the probe word keeps 12 bits per
/// field.
pub(crate) const MAX_PROBES: u32 = 4_095;
/// The most buckets of a time window.
pub(crate) const MAX_BUCKETS: u32 = 1_000;

/// How a breaker's window keeps outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowKind {
    /// The last `n` calls.
    Count(u64),
    /// The calls of the last `span`, in `buckets` buckets.
    Time { span: Duration, buckets: u32 },
}

/// Failed calls in a row, the last with a hint, that open the breaker
/// for the hint alone.
const DEFAULT_RETRY_AFTER_RUN: u64 = 5;

/// Checked settings of one breaker.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) name: Cow<'static, str>,
    pub(crate) failure_rate: f64,
    /// `Some((duration, rate))` when slow-call detection is on.
    pub(crate) slow: Option<(Duration, f64)>,
    pub(crate) window: WindowKind,
    pub(crate) minimum_calls: u64,
    pub(crate) open: Duration,
    pub(crate) backoff: Option<(f64, Duration)>,
    pub(crate) retry_after_cap: Option<Duration>,
    /// A hinted failure opens the breaker alone once it ends a run of this
    /// many failed calls.
    pub(crate) retry_after_run: u64,
    /// Opens after this many failed calls in a row, whatever the rates.
    pub(crate) consecutive_failures: Option<u64>,
    pub(crate) probes: u32,
    pub(crate) max_half_open_wait: Option<Duration>,
    pub(crate) listeners: crate::event::Listeners,
}

impl Settings {
    /// Whether the failure or slow-call rate of `calls` reaches its
    /// threshold; `None` if neither does. Percentages, as configured.
    pub(crate) fn trips(&self, calls: u64, failures: u64, slow: u64) -> Option<TransitionReason> {
        if calls == 0 {
            return None;
        }
        let calls = calls as f64;
        if failures as f64 * 100.0 >= self.failure_rate * calls {
            return Some(TransitionReason::FailureRate);
        }
        match self.slow {
            Some((_, rate)) if slow as f64 * 100.0 >= rate * calls => {
                Some(TransitionReason::SlowCallRate)
            }
            _ => None,
        }
    }

    /// How long the breaker stays open for its `openings`-th consecutive
    /// opening (0 for the first), before any retry-after hint.
    pub(crate) fn open_for(&self, openings: u32) -> Duration {
        match self.backoff {
            None => self.open,
            Some((factor, max)) => {
                let grown = self.open.as_secs_f64() * factor.powi(openings.min(1_000) as i32);
                Duration::try_from_secs_f64(grown).map_or(max, |d| d.min(max))
            }
        }
    }

    /// The open duration, extended by a failure's retry-after hint if the
    /// breaker honours hints.
    pub(crate) fn open_with_hint(&self, openings: u32, hint: Option<Duration>) -> Duration {
        let base = self.open_for(openings);
        match self.honoured(hint) {
            Some(hint) => base.max(hint),
            None => base,
        }
    }

    /// A failure's retry-after hint, capped, if the breaker honours hints
    /// and the hint asks for a wait at all.
    pub(crate) fn honoured(&self, hint: Option<Duration>) -> Option<Duration> {
        match (self.retry_after_cap, hint) {
            (Some(cap), Some(hint)) if !hint.is_zero() => Some(hint.min(cap)),
            _ => None,
        }
    }
}

/// The plain breaker's mode: [`build`](CircuitBreakerBuilder::build) makes
/// a [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
#[derive(Debug, Clone, Copy, Default)]
pub struct Single;

/// Builds a circuit breaker layer: from
/// [`CircuitBreakerLayer::builder`](super::CircuitBreakerLayer::builder) or
/// [`KeyedCircuitBreakerLayer::builder`](super::KeyedCircuitBreakerLayer::builder).
///
/// Defaults follow Resilience4j: a count window of 100 calls, at least 100
/// calls (the window size) before the rates count, failure rate 50 %, open
/// 60 s, 10 probes in half-open, no maximum wait in half-open, slow-call
/// detection off, no trip on consecutive failures, retry-after hints not
/// honoured.
///
/// ```
/// use std::time::Duration;
/// use steadfast::circuit_breaker::{CircuitBreakerLayer, KeyedCircuitBreakerLayer, State};
///
/// let breaker = CircuitBreakerLayer::builder()
///     .time_window(Duration::from_secs(30), 30)
///     .minimum_calls(20)
///     .failure_rate_threshold(50.0)
///     .slow_call_duration(Duration::from_secs(2))
///     .open_duration(Duration::from_secs(5))
///     .build()?;
/// assert_eq!(breaker.handle().state(), State::Closed);
///
/// // One breaker per upstream host, at most 100 of them.
/// struct Request { host: String }
/// let per_host = KeyedCircuitBreakerLayer::builder()
///     .key(|req: &Request| req.host.clone())
///     .max_keys(100)
///     .build()?;
/// assert_eq!(per_host.len(), 0);
///
/// let err = CircuitBreakerLayer::builder().failure_rate_threshold(0.0).build().unwrap_err();
/// assert_eq!(err.field(), "circuit_breaker.failure_rate_threshold");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerBuilder<C = DefaultClassifier, M = Single> {
    pub(crate) classifier: C,
    pub(crate) mode: M,
    name: Cow<'static, str>,
    failure_rate: f64,
    slow_rate: Option<f64>,
    slow_duration: Option<Duration>,
    window: WindowKind,
    minimum_calls: Option<u64>,
    open: Duration,
    backoff: Option<(f64, Duration)>,
    retry_after_cap: Option<Duration>,
    retry_after_run: u64,
    consecutive_failures: Option<u64>,
    probes: u32,
    max_half_open_wait: Option<Duration>,
    listeners: crate::event::Listeners,
}

impl<M> CircuitBreakerBuilder<DefaultClassifier, M> {
    pub(crate) fn with_mode(mode: M) -> Self {
        Self {
            classifier: DefaultClassifier,
            mode,
            name: Cow::Borrowed("circuit_breaker"),
            failure_rate: 50.0,
            slow_rate: None,
            slow_duration: None,
            window: WindowKind::Count(100),
            minimum_calls: None,
            open: Duration::from_secs(60),
            backoff: None,
            retry_after_cap: None,
            retry_after_run: DEFAULT_RETRY_AFTER_RUN,
            consecutive_failures: None,
            probes: 10,
            max_half_open_wait: None,
            listeners: crate::event::Listeners::none(),
        }
    }
}

impl<C, M> CircuitBreakerBuilder<C, M> {
    /// The failure rate, in percent of the calls in the window, at which
    /// the breaker opens. In `(0, 100]`; default 50.
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.failure_rate = percent;
        self
    }

    /// The slow-call rate, in percent, at which the breaker opens. In
    /// `(0, 100]`; default 100 once slow-call detection is on.
    ///
    /// Setting this or [`slow_call_duration`](Self::slow_call_duration)
    /// turns slow-call detection on.
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.slow_rate = Some(percent);
        self
    }

    /// Calls that take longer than this, from `call` to completion and
    /// whatever their verdict, are slow. Default 60 s once slow-call
    /// detection is on.
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.slow_duration = Some(duration);
        self
    }

    /// Judge the last `calls` calls (the default, with 100): each new
    /// outcome pushes the oldest out.
    ///
    /// From 16 calls up, each thread enters its plain successes in
    /// batches (the largest power of two up to `calls / 8`, at most 64), so
    /// that a successful call writes no memory another core reads: the
    /// window's counts then differ from those of the exact last `calls`
    /// calls by at most `batch - 1` per thread recording (12.5 % of the
    /// window per thread at most; 7 calls per thread for 100). Failures
    /// and slow calls enter at once.
    pub fn count_window(mut self, calls: u64) -> Self {
        self.window = WindowKind::Count(calls);
        self
    }

    /// Judge the calls of the last `span`, kept in `buckets` buckets of
    /// `span / buckets` each: a bucket leaves the window as a whole.
    ///
    /// From a [`minimum_calls`](Self::minimum_calls) of 16 up (the default
    /// is 100), each thread enters its plain successes in batches (the
    /// largest power of two up to `minimum_calls / 8`, at most 64), in the
    /// bucket of the moment the batch fills, and reads the clock once a
    /// batch unless slow-call detection is on: the failure and slow-call
    /// counts stay exact, the call count is within `batch - 1` per thread
    /// recording of the exact one.
    pub fn time_window(mut self, span: Duration, buckets: u32) -> Self {
        self.window = WindowKind::Time { span, buckets };
        self
    }

    /// The fewest calls in the window before its rates can open the
    /// breaker. Default: the count window's size, or 100 for a time window.
    pub fn minimum_calls(mut self, calls: u64) -> Self {
        self.minimum_calls = Some(calls);
        self
    }

    /// How long the breaker stays open before it lets probes through.
    /// Default 60 s.
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.open = duration;
        self
    }

    /// Multiplies the open duration by `factor` at each opening that
    /// follows another without the breaker closing in between, up to `max`.
    pub fn open_backoff(mut self, factor: f64, max: Duration) -> Self {
        self.backoff = Some((factor, max));
        self
    }

    /// Honours a failure's retry-after hint (a [`Verdict::Transient`] with
    /// `retry_after`, such as a 503 or 429 with `Retry-After`) for every
    /// caller, up to `max`:
    ///
    /// - while closed, a failure with a hint that ends a run of
    ///   [`retry_after_run`](Self::retry_after_run) failed calls (5 by
    ///   default) opens the breaker at once, for the hint alone, whatever
    ///   the rates: the callee asked not to be called in that period, and
    ///   every call in it is refused with a
    ///   [`CircuitOpen`](crate::error::CircuitOpen) carrying the time left.
    ///   A lone hinted failure among successes (a brownout, where one
    ///   overloaded replica answers 503 with `Retry-After` and the others
    ///   answer) delays only its own retry;
    /// - a failure that opens the breaker by its rates or its run of
    ///   failures keeps it open at least as long as its hint;
    /// - a half-open probe failing with a hint reopens the breaker at once,
    ///   for the longer of the open duration and the hint.
    ///
    /// A hint of zero asks for no wait and changes nothing.
    ///
    /// [`Verdict::Transient`]: crate::classify::Verdict::Transient
    pub fn honor_retry_after(mut self, max: Duration) -> Self {
        self.retry_after_cap = Some(max);
        self
    }

    /// Ignores retry-after hints (the default): only the window's rates
    /// and the run of failures open the breaker, for the open duration.
    pub fn ignore_retry_after(mut self) -> Self {
        self.retry_after_cap = None;
        self
    }

    /// How many failed calls in a row, the last of them carrying a
    /// retry-after hint, open the breaker for that hint alone (see
    /// [`honor_retry_after`](Self::honor_retry_after)). The default, 5, is
    /// Envoy's `consecutive_5xx`: at a 10 % failure rate a run of 5 ends a
    /// given call with probability 10⁻⁵, so a brownout rarely opens the
    /// breaker while an outage that answers every call with a hint opens it
    /// within 5 calls. `1` opens on any hinted failure. Must be at least 1.
    pub fn retry_after_run(mut self, failures: u32) -> Self {
        self.retry_after_run = u64::from(failures);
        self
    }

    /// Opens the breaker after `failures` failed calls in a row, whatever
    /// the window's rates and its minimum number of calls: the fast trip
    /// that detects a total outage in a few calls, even after a long
    /// healthy phase has filled the window with successes (Envoy ejects a
    /// host after 5 consecutive 5xx). Off by default; at least 1.
    ///
    /// "In a row" is in the order calls end: a success or a functional
    /// error ends the run, a call refused by an inner policy neither adds
    /// to it nor ends it. The run is counted while the breaker is closed or
    /// metrics-only (which never opens) and starts again from zero when
    /// the breaker closes.
    ///
    /// Under independent failures at rate `p`, a run of `n` starts at a
    /// given call with probability `p^n`: with `n = 20` and a 10 % brownout
    /// that is 10⁻²⁰, so the fast trip fires in outages, not brownouts.
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = Some(u64::from(failures));
        self
    }

    /// No trip on consecutive failures (the default): only the window's
    /// rates open the breaker.
    pub fn no_consecutive_failures(mut self) -> Self {
        self.consecutive_failures = None;
        self
    }

    /// How many probe calls half-open lets through; their outcomes close or
    /// reopen the breaker. Default 10.
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.probes = probes;
        self
    }

    /// The longest the breaker stays half-open waiting for its probes; then
    /// it opens again. Default: no limit.
    pub fn max_half_open_wait(mut self, wait: Duration) -> Self {
        self.max_half_open_wait = Some(wait);
        self
    }

    /// The name of the breaker in its events.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The name set so far.
    pub(crate) fn name_set(&self) -> &str {
        &self.name
    }

    /// Calls `listener` with this breaker's
    /// [`StateChanged`](crate::event::Event::StateChanged) and
    /// [`Rejected`](crate::event::Event::Rejected) events, those forced
    /// through its handle included. With none, the cost is nil.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use steadfast::circuit_breaker::{CircuitBreakerLayer, State};
    /// use steadfast::observe::Event;
    ///
    /// # fn main() -> Result<(), steadfast::ConfigError> {
    /// let changes = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&changes);
    /// let layer = CircuitBreakerLayer::builder()
    ///     .on_event(move |event| {
    ///         if let Event::StateChanged { from, to, .. } = *event {
    ///             log.lock().unwrap().push((from, to));
    ///         }
    ///     })
    ///     .build()?;
    /// layer.handle().force_open();
    /// assert_eq!(*changes.lock().unwrap(), [(State::Closed, State::ForcedOpen)]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_event(
        mut self,
        listener: impl Fn(&crate::event::Event<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.listeners = self.listeners.with(listener);
        self
    }

    /// Judges outcomes with `classifier` instead of the
    /// [`DefaultClassifier`].
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerBuilder<C2, M> {
        CircuitBreakerBuilder {
            classifier,
            mode: self.mode,
            name: self.name,
            failure_rate: self.failure_rate,
            slow_rate: self.slow_rate,
            slow_duration: self.slow_duration,
            window: self.window,
            minimum_calls: self.minimum_calls,
            open: self.open,
            backoff: self.backoff,
            retry_after_cap: self.retry_after_cap,
            retry_after_run: self.retry_after_run,
            consecutive_failures: self.consecutive_failures,
            probes: self.probes,
            max_half_open_wait: self.max_half_open_wait,
            listeners: self.listeners,
        }
    }

    pub(crate) fn with_other_mode<M2>(self, mode: M2) -> (CircuitBreakerBuilder<C, M2>, M) {
        let old = self.mode;
        let builder = CircuitBreakerBuilder {
            classifier: self.classifier,
            mode,
            name: self.name,
            failure_rate: self.failure_rate,
            slow_rate: self.slow_rate,
            slow_duration: self.slow_duration,
            window: self.window,
            minimum_calls: self.minimum_calls,
            open: self.open,
            backoff: self.backoff,
            retry_after_cap: self.retry_after_cap,
            retry_after_run: self.retry_after_run,
            consecutive_failures: self.consecutive_failures,
            probes: self.probes,
            max_half_open_wait: self.max_half_open_wait,
            listeners: self.listeners,
        };
        (builder, old)
    }

    /// The span of the time window, if the window is one.
    pub(crate) fn time_window_span(&self) -> Option<Duration> {
        match self.window {
            WindowKind::Time { span, .. } => Some(span),
            WindowKind::Count(_) => None,
        }
    }

    /// Checks every setting.
    pub(crate) fn settings(&self) -> Result<Settings, ConfigError> {
        let failure_rate = check::in_half_open(
            "circuit_breaker.failure_rate_threshold",
            self.failure_rate,
            0.0,
            100.0,
        )?;
        let slow = if self.slow_rate.is_some() || self.slow_duration.is_some() {
            let rate = check::in_half_open(
                "circuit_breaker.slow_call_rate_threshold",
                self.slow_rate.unwrap_or(100.0),
                0.0,
                100.0,
            )?;
            let duration = check::positive(
                "circuit_breaker.slow_call_duration",
                self.slow_duration.unwrap_or(Duration::from_secs(60)),
            )?;
            Some((duration, rate))
        } else {
            None
        };
        let window = match self.window {
            WindowKind::Count(calls) => {
                check::at_least("circuit_breaker.count_window", calls, 1)?;
                at_most("circuit_breaker.count_window", calls, MAX_COUNT_WINDOW)?;
                WindowKind::Count(calls)
            }
            WindowKind::Time { span, buckets } => {
                check::positive("circuit_breaker.time_window", span)?;
                check::at_least("circuit_breaker.time_window_buckets", buckets, 1)?;
                at_most("circuit_breaker.time_window_buckets", buckets, MAX_BUCKETS)?;
                if span.as_nanos() < u128::from(buckets) {
                    return Err(ConfigError::conflict(
                        "circuit_breaker.time_window_buckets",
                        buckets,
                        "circuit_breaker.time_window",
                        span,
                        "each bucket must last at least one nanosecond",
                    ));
                }
                WindowKind::Time { span, buckets }
            }
        };
        let minimum_calls = match (self.minimum_calls, window) {
            (Some(min), WindowKind::Count(size)) => {
                check::at_least("circuit_breaker.minimum_calls", min, 1)?;
                if min > size {
                    return Err(ConfigError::conflict(
                        "circuit_breaker.minimum_calls",
                        min,
                        "circuit_breaker.count_window",
                        size,
                        "the minimum number of calls must fit in the count window",
                    ));
                }
                min
            }
            (Some(min), WindowKind::Time { .. }) => {
                check::at_least("circuit_breaker.minimum_calls", min, 1)?
            }
            (None, WindowKind::Count(size)) => size,
            (None, WindowKind::Time { .. }) => 100,
        };
        let open = check::positive("circuit_breaker.open_duration", self.open)?;
        let backoff = match self.backoff {
            None => None,
            Some((factor, max)) => {
                if !(factor.is_finite() && factor >= 1.0) {
                    return Err(ConfigError::new(
                        "circuit_breaker.open_backoff_factor",
                        factor,
                        "must be a finite number of at least 1",
                    ));
                }
                check::not_above(
                    "circuit_breaker.open_duration",
                    open,
                    "circuit_breaker.open_backoff_max",
                    max,
                    "the first open duration must not exceed the longest",
                )?;
                Some((factor, max))
            }
        };
        let retry_after_cap = self
            .retry_after_cap
            .map(|cap| check::positive("circuit_breaker.honor_retry_after", cap))
            .transpose()?;
        let consecutive_failures = self
            .consecutive_failures
            .map(|n| check::at_least("circuit_breaker.consecutive_failures", n, 1))
            .transpose()?;
        let retry_after_run =
            check::at_least("circuit_breaker.retry_after_run", self.retry_after_run, 1)?;
        check::at_least("circuit_breaker.half_open_probes", self.probes, 1)?;
        at_most("circuit_breaker.half_open_probes", self.probes, MAX_PROBES)?;
        let max_half_open_wait = self
            .max_half_open_wait
            .map(|wait| check::positive("circuit_breaker.max_half_open_wait", wait))
            .transpose()?;
        Ok(Settings {
            name: self.name.clone(),
            failure_rate,
            slow,
            window,
            minimum_calls,
            open,
            backoff,
            retry_after_cap,
            retry_after_run,
            consecutive_failures,
            probes: self.probes,
            max_half_open_wait,
            listeners: self.listeners.clone(),
        })
    }
}

fn at_most<T: PartialOrd + std::fmt::Debug + Copy>(
    field: &'static str,
    value: T,
    max: T,
) -> Result<T, ConfigError> {
    if value > max {
        Err(ConfigError::new(
            field,
            value,
            format!("must be at most {max:?}"),
        ))
    } else {
        Ok(value)
    }
}
