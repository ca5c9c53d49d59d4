//! Metrics through the `metrics` facade: names, labels, and the handles
//! kept for the per-call ones.

use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Label, counter, gauge, histogram};

use super::event::{Event, Rejection};
use super::values::State;
use crate::classify::Verdict;

/// Logical calls, by `policy`, `route`, `verdict`.
pub const CALLS: &str = "steadfast_calls_total";
/// Duration of logical calls in seconds, by `policy`, `route`, `verdict`.
pub const CALL_DURATION: &str = "steadfast_call_duration_seconds";
/// Attempts, by `policy`, `route`, `verdict`.
pub const ATTEMPTS: &str = "steadfast_attempts_total";
/// Duration of attempts in seconds, by `policy`, `route`, `verdict`.
pub const ATTEMPT_DURATION: &str = "steadfast_attempt_duration_seconds";
/// Retries scheduled, by `policy`, `route`, `name`, `verdict` (of the
/// attempt that failed).
pub const RETRIES: &str = "steadfast_retries_total";
/// Failures returned without a retry, by `policy`, `route`, `name`,
/// `reason` (`budget_spent`, `attempts_exhausted`, `deadline`, ...).
pub const RETRIES_STOPPED: &str = "steadfast_retries_stopped_total";
/// Calls refused, by `policy`, `route`, `kind` (`circuit_open`,
/// `bulkhead_full`, `rate_limited`, `deadline_exceeded`), `name`.
pub const REJECTIONS: &str = "steadfast_rejections_total";
/// Breaker state, by `name`, `key` (empty unless keyed) and `state`: 1
/// for the breaker's state, 0 for the five others.
pub const BREAKER_STATE: &str = "steadfast_circuit_breaker_state";
/// Breaker transitions, by `name`, `from`, `to`, `reason`.
pub const BREAKER_TRANSITIONS: &str = "steadfast_circuit_breaker_transitions_total";
/// Calls holding a bulkhead permit, by `name` (all keys of a keyed
/// bulkhead together).
pub const BULKHEAD_IN_FLIGHT: &str = "steadfast_bulkhead_in_flight";
/// Calls a rate limiter refused or delayed, by `tier` and `outcome`
/// (`rejected`, `delayed`).
pub const RATE_LIMITED: &str = "steadfast_rate_limited_total";
/// Fallback answers, by `policy`, `route`, `name`, `source` (`alternate`,
/// `cache`, `static`, or `none` when no source answered).
pub const FALLBACKS: &str = "steadfast_fallbacks_total";
/// Hedged copies sent, by `policy`, `route`, `name`.
pub const HEDGES_SENT: &str = "steadfast_hedges_sent_total";
/// Hedged copies that gave the answer, by `policy`, `route`, `name`.
pub const HEDGES_WON: &str = "steadfast_hedges_won_total";
/// The limit of an adaptive concurrency limiter, by `name` (the last
/// written of a keyed limiter's keys).
pub const ADAPTIVE_LIMIT: &str = "steadfast_adaptive_limit";
/// Calls in flight through an adaptive limiter, by `name` (all keys of a
/// keyed limiter together).
pub const ADAPTIVE_IN_FLIGHT: &str = "steadfast_adaptive_in_flight";
/// Adaptive limit changes, by `name` and `reason` (`window`, `probe`,
/// `probe_done`).
pub const ADAPTIVE_LIMIT_CHANGES: &str = "steadfast_adaptive_limit_changes_total";
/// 1 while a rate limit store is degraded, 0 once it recovers, by `store`.
pub const STORE_DEGRADED: &str = "steadfast_rate_limit_store_degraded";
/// Rate limit store transitions, by `store` and `to` (`degraded`,
/// `recovered`).
pub const STORE_TRANSITIONS: &str = "steadfast_rate_limit_store_transitions_total";
/// Calls slower than their route's threshold, by `policy`, `route`.
pub const SLOW_CALLS: &str = "steadfast_slow_calls_total";

const VERDICTS: [Verdict; 5] = [
    Verdict::Success,
    Verdict::FunctionalError,
    Verdict::Transient { retry_after: None },
    Verdict::Failure,
    Verdict::Rejected { retry_after: None },
];

const fn verdict_index(verdict: Verdict) -> usize {
    match verdict {
        Verdict::Success => 0,
        Verdict::FunctionalError => 1,
        Verdict::Transient { .. } => 2,
        Verdict::Failure => 3,
        Verdict::Rejected { .. } => 4,
    }
}

struct ByVerdict {
    count: Counter,
    seconds: Histogram,
}

/// The per-call handles of one observe layer, one set per verdict.
pub(crate) struct CallMetrics {
    calls: [ByVerdict; 5],
    attempts: [ByVerdict; 5],
}

impl CallMetrics {
    pub(crate) fn register(policy: &str, route: &str) -> Self {
        let set = |count: &'static str, seconds: &'static str| {
            VERDICTS.map(|verdict| {
                let labels = [
                    ("policy", policy.to_owned()),
                    ("route", route.to_owned()),
                    ("verdict", verdict.as_str().to_owned()),
                ];
                ByVerdict {
                    count: counter!(count, &labels),
                    seconds: histogram!(seconds, &labels),
                }
            })
        };
        Self {
            calls: set(CALLS, CALL_DURATION),
            attempts: set(ATTEMPTS, ATTEMPT_DURATION),
        }
    }

    #[inline]
    pub(crate) fn call(&self, verdict: Verdict, elapsed: Duration) {
        let m = &self.calls[verdict_index(verdict)];
        m.count.increment(1);
        m.seconds.record(elapsed.as_secs_f64());
    }

    #[inline]
    pub(crate) fn attempt(&self, verdict: Verdict, elapsed: Duration) {
        let m = &self.attempts[verdict_index(verdict)];
        m.count.increment(1);
        m.seconds.record(elapsed.as_secs_f64());
    }
}

impl std::fmt::Debug for CallMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMetrics").finish_non_exhaustive()
    }
}

/// The labels of one decision's series, borrowed: `(name, value)` pairs.
type Labels<'a> = [(&'static str, &'a str)];

/// A series registered: its metric, its labels (owned), the recorder it
/// was registered with and its handle.
struct Registered {
    metric: &'static str,
    labels: Box<[(&'static str, Box<str>)]>,
    recorder: usize,
    handle: Handle,
}

enum Handle {
    Counter(Counter),
    Gauge(Gauge),
}

impl Registered {
    fn is(&self, metric: &'static str, labels: &Labels<'_>) -> bool {
        self.metric == metric
            && self.labels.len() == labels.len()
            && self
                .labels
                .iter()
                .zip(labels)
                .all(|((k, v), (key, value))| k == key && **v == **value)
    }
}

/// The recorder in effect on this thread (its local one, else the global
/// one, else the no-op recorder), told apart by its address.
fn recorder_in_effect() -> usize {
    metrics::with_recorder(|recorder| std::ptr::from_ref(recorder).cast::<()>().addr())
}

/// The decision series of one layer (a breaker, a bulkhead, a retry
/// layer, a rate limiter), of the layers that share one name and
/// settings, or of one observe layer's calls, kept by a hash of their
/// metric and labels.
///
/// A series is registered with the recorder in effect the first time its
/// layer decides it (a series nobody decided is never exported, as
/// before), then found again without allocating or taking a lock: the
/// series are bounded by configuration (names, tiers, routes and fixed
/// label values), never by traffic. A decision made while another
/// recorder is in effect (one installed since, or a thread's local
/// recorder) registers the series again with that recorder, which keeps
/// it from then on: a table shared by several layers, or used from
/// several threads, never counts into a recorder that is not in effect.
pub(crate) struct Decisions {
    /// Made at the first decision: a layer (or a key) that never decides
    /// anything costs no table.
    series: std::sync::OnceLock<papaya::HashMap<u64, Registered>>,
}

impl Decisions {
    /// No series yet.
    pub(crate) const fn new() -> Self {
        Self {
            series: std::sync::OnceLock::new(),
        }
    }

    /// Runs `f` on the handle of the series `metric` + `labels`,
    /// registering it (with `register`) if this is its first decision
    /// under the recorder in effect.
    fn with_series(
        &self,
        metric: &'static str,
        labels: &Labels<'_>,
        register: fn(&'static str, Vec<Label>) -> Handle,
        f: impl FnOnce(&Handle),
    ) {
        let hash = series_hash(metric, labels);
        let recorder = recorder_in_effect();
        let series = self
            .series
            .get_or_init(|| papaya::HashMap::builder().capacity(4).build());
        let series = series.pin();
        if let Some(found) = series.get(&hash) {
            if !found.is(metric, labels) {
                // Another series with the same hash: not kept.
                return f(&register(metric, owned(labels)));
            }
            if found.recorder == recorder {
                return f(&found.handle);
            }
        }
        // Not kept yet, or kept for another recorder: registered with
        // this one, and kept for it.
        let registered = Registered {
            metric,
            labels: labels
                .iter()
                .map(|(key, value)| (*key, Box::from(*value)))
                .collect(),
            recorder,
            handle: register(metric, owned(labels)),
        };
        f(&registered.handle);
        match series.try_insert(hash, registered) {
            Ok(_) => {}
            // Kept meanwhile by another thread, for its recorder: this
            // one replaces it if it is the same series (the last
            // recorder in effect wins), else leaves it.
            Err(taken) if taken.current.is(metric, labels) => {
                if taken.current.recorder != recorder {
                    series.insert(hash, taken.not_inserted);
                }
            }
            Err(_) => {}
        }
    }
}

impl std::fmt::Debug for Decisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decisions")
            .field("series", &self.series.get().map_or(0, papaya::HashMap::len))
            .finish()
    }
}

impl Default for Decisions {
    fn default() -> Self {
        Self::new()
    }
}

fn register_counter(metric: &'static str, labels: Vec<Label>) -> Handle {
    Handle::Counter(counter!(metric, labels))
}

fn register_gauge(metric: &'static str, labels: Vec<Label>) -> Handle {
    Handle::Gauge(gauge!(metric, labels))
}

fn series_hash(metric: &'static str, labels: &Labels<'_>) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    metric.hash(&mut hasher);
    labels.hash(&mut hasher);
    hasher.finish()
}

fn owned(labels: &Labels<'_>) -> Vec<Label> {
    labels
        .iter()
        .map(|(key, value)| Label::new(*key, (*value).to_owned()))
        .collect()
}

/// Runs `f` on the handle of the series, kept in `decisions` if given,
/// else registered for this once.
fn with_series(
    decisions: Option<&Decisions>,
    metric: &'static str,
    labels: &Labels<'_>,
    register: fn(&'static str, Vec<Label>) -> Handle,
    f: impl FnOnce(&Handle),
) {
    match decisions {
        Some(decisions) => decisions.with_series(metric, labels, register, f),
        None => f(&register(metric, owned(labels))),
    }
}

fn count(decisions: Option<&Decisions>, metric: &'static str, labels: &Labels<'_>) {
    with_series(decisions, metric, labels, register_counter, |handle| {
        if let Handle::Counter(counter) = handle {
            counter.increment(1);
        }
    });
}

fn set(decisions: Option<&Decisions>, metric: &'static str, labels: &Labels<'_>, value: f64) {
    with_series(decisions, metric, labels, register_gauge, |handle| {
        if let Handle::Gauge(gauge) = handle {
            gauge.set(value);
        }
    });
}

/// Counts a decision. `call` is the `(policy, route)` of the call it
/// happened in, if an observe layer watches it.
///
/// With `decisions` (the deciding layer's, or the watched call's), this
/// allocates nothing once the series is registered there; without, it
/// registers the series for this once.
pub(crate) fn record(event: &Event<'_>, call: Option<(&str, &str)>, decisions: Option<&Decisions>) {
    let d = decisions;
    let (policy, route) = call.unwrap_or(("", ""));
    match *event {
        Event::RetryScheduled { name, verdict, .. } => count(
            d,
            RETRIES,
            &[
                ("policy", policy),
                ("route", route),
                ("name", name),
                ("verdict", verdict.as_str()),
            ],
        ),
        Event::RetryStopped { name, reason, .. } => count(
            d,
            RETRIES_STOPPED,
            &[
                ("policy", policy),
                ("route", route),
                ("name", name),
                ("reason", reason.as_str()),
            ],
        ),
        Event::StateChanged {
            name,
            from,
            to,
            reason,
            ..
        } => count(
            d,
            BREAKER_TRANSITIONS,
            &[
                ("name", name),
                ("from", from.as_str()),
                ("to", to.as_str()),
                ("reason", reason.as_str()),
            ],
        ),
        Event::Rejected {
            rejection, name, ..
        } => {
            count(
                d,
                REJECTIONS,
                &[
                    ("policy", policy),
                    ("route", route),
                    ("kind", rejection.as_str()),
                    ("name", name),
                ],
            );
            if rejection == Rejection::RateLimited {
                count(d, RATE_LIMITED, &[("tier", name), ("outcome", "rejected")]);
            }
        }
        Event::KeyOverflow { .. } => {}
        Event::Throttled { tier, .. } => {
            count(d, RATE_LIMITED, &[("tier", tier), ("outcome", "delayed")]);
        }
        Event::FallbackServed { name, source, .. } => count(
            d,
            FALLBACKS,
            &[
                ("policy", policy),
                ("route", route),
                ("name", name),
                ("source", source.as_str()),
            ],
        ),
        Event::FallbackMissed { name, .. } => count(
            d,
            FALLBACKS,
            &[
                ("policy", policy),
                ("route", route),
                ("name", name),
                ("source", "none"),
            ],
        ),
        Event::HedgeSent { name, .. } => count(
            d,
            HEDGES_SENT,
            &[("policy", policy), ("route", route), ("name", name)],
        ),
        // Hedges that paid: a copy, not the first request, answered.
        Event::HedgeWon { copy: 0, .. } => {}
        Event::HedgeWon { name, .. } => count(
            d,
            HEDGES_WON,
            &[("policy", policy), ("route", route), ("name", name)],
        ),
        Event::SlowCall { .. } => {
            count(d, SLOW_CALLS, &[("policy", policy), ("route", route)]);
        }
        Event::LimitChanged { name, reason, .. } => {
            count(
                d,
                ADAPTIVE_LIMIT_CHANGES,
                &[("name", name), ("reason", reason.as_str())],
            );
        }
        Event::StoreDegraded { store, .. } => {
            set(d, STORE_DEGRADED, &[("store", store)], 1.0);
            count(
                d,
                STORE_TRANSITIONS,
                &[("store", store), ("to", "degraded")],
            );
        }
        Event::StoreRecovered { store, .. } => {
            set(d, STORE_DEGRADED, &[("store", store)], 0.0);
            count(
                d,
                STORE_TRANSITIONS,
                &[("store", store), ("to", "recovered")],
            );
        }
        Event::CallEnded { .. }
        | Event::AttemptTimedOut { .. }
        | Event::AdmittedAfterWait { .. }
        | Event::HedgeRefused { .. }
        | Event::HedgeFailed { .. }
        | Event::FallbackSkipped { .. }
        | Event::FaultInjected { .. }
        | Event::UnknownTier { .. }
        | Event::StageStarted { .. }
        | Event::BranchEnded { .. }
        | Event::Gathered { .. } => {}
    }
}

/// The gauges of one adaptive limiter.
pub(crate) struct AdaptiveGauges {
    pub(crate) in_flight: Gauge,
    limit: Gauge,
}

impl AdaptiveGauges {
    pub(crate) fn register(name: &str) -> Self {
        Self {
            in_flight: gauge!(ADAPTIVE_IN_FLIGHT, "name" => name.to_owned()),
            limit: gauge!(ADAPTIVE_LIMIT, "name" => name.to_owned()),
        }
    }

    // A limit beyond 2^53 is not a limit anyone reads exactly.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn limit(&self, limit: usize) {
        self.limit.set(limit as f64);
    }
}

impl std::fmt::Debug for AdaptiveGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdaptiveGauges").finish_non_exhaustive()
    }
}

const STATES: [State; 6] = [
    State::Closed,
    State::Open,
    State::HalfOpen,
    State::ForcedOpen,
    State::Disabled,
    State::MetricsOnly,
];

/// The state gauges of one breaker: exactly one of them is 1.
///
/// Transitions are decided by compare-exchange, but reported after; the
/// gauges are rewritten under a lock (taken on transitions only, never per
/// call) from the state read inside it, so the last writer always writes
/// the newest state and the six gauges never show two states at 1.
pub(crate) struct BreakerGauges {
    gauges: [Gauge; 6],
    lock: Mutex<()>,
}

impl BreakerGauges {
    pub(crate) fn register(name: &str, key: Option<&str>) -> Self {
        let gauges = STATES.map(|state| {
            gauge!(BREAKER_STATE,
                "name" => name.to_owned(), "key" => key.unwrap_or_default().to_owned(), "state" => state.as_str())
        });
        let this = Self {
            gauges,
            lock: Mutex::new(()),
        };
        this.show(State::Closed);
        this
    }

    /// Shows `current()`, read under the lock.
    pub(crate) fn update(&self, current: impl FnOnce() -> State) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.show(current());
    }

    /// Zeroes every state gauge, for a breaker that is gone (an evicted
    /// key): its series shows no state, and exporters that drop idle
    /// series drop it.
    pub(crate) fn remove(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        for gauge in &self.gauges {
            gauge.set(0.0);
        }
    }

    fn show(&self, state: State) {
        // Zeros first, then the one: a reader between the two sees no
        // state at 1 for an instant, never two.
        for (gauge, s) in self.gauges.iter().zip(STATES) {
            if s != state {
                gauge.set(0.0);
            }
        }
        for (gauge, s) in self.gauges.iter().zip(STATES) {
            if s == state {
                gauge.set(1.0);
            }
        }
    }
}

impl std::fmt::Debug for BreakerGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerGauges").finish_non_exhaustive()
    }
}

/// The in-flight gauge of bulkheads named `name`; the keys of a keyed
/// bulkhead add up in it.
pub(crate) fn bulkhead_in_flight(name: &str) -> Gauge {
    gauge!(BULKHEAD_IN_FLIGHT, "name" => name.to_owned())
}

/// Every series a debugging recorder holds, in its order: the metric's
/// name, its labels as `key=value` joined by commas, and its value.
#[cfg(test)]
pub(crate) fn recorded(
    snapshotter: &metrics_util::debugging::Snapshotter,
) -> Vec<(String, String, metrics_util::debugging::DebugValue)> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (key.key().name().to_owned(), labels.join(","), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    fn counts(snapshotter: &metrics_util::debugging::Snapshotter) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = recorded(snapshotter)
            .into_iter()
            .map(|(name, labels, value)| {
                let n = match value {
                    DebugValue::Counter(n) => n,
                    other => panic!("{other:?}"),
                };
                (format!("{name} {labels}"), n)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_layer_counts_each_series_in_the_handle_it_keeps() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let decisions = Decisions::new();
            for _ in 0..3 {
                count(
                    Some(&decisions),
                    RATE_LIMITED,
                    &[("tier", "free"), ("outcome", "rejected")],
                );
            }
            count(
                Some(&decisions),
                RATE_LIMITED,
                &[("tier", "free"), ("outcome", "delayed")],
            );
            // Same values under other label names are another series.
            count(
                Some(&decisions),
                HEDGES_SENT,
                &[("tier", "free"), ("outcome", "delayed")],
            );
            // Without a layer's table, the series is registered for once.
            count(
                None,
                RATE_LIMITED,
                &[("tier", "free"), ("outcome", "rejected")],
            );
            assert_eq!(decisions.series.get().map(papaya::HashMap::len), Some(3));
        });
        assert_eq!(
            counts(&snapshotter),
            [
                (
                    "steadfast_hedges_sent_total tier=free,outcome=delayed".to_owned(),
                    1
                ),
                (
                    "steadfast_rate_limited_total tier=free,outcome=delayed".to_owned(),
                    1
                ),
                (
                    "steadfast_rate_limited_total tier=free,outcome=rejected".to_owned(),
                    4
                ),
            ]
        );
    }

    #[test]
    fn a_table_counts_into_the_recorder_in_effect() {
        let decisions = Decisions::new();
        let labels = [("tier", "free"), ("outcome", "rejected")];
        // Decided first with no recorder at all: nothing to read, and
        // nothing kept that a recorder installed later would miss.
        count(Some(&decisions), RATE_LIMITED, &labels);
        let (first, second) = (DebuggingRecorder::new(), DebuggingRecorder::new());
        let (one, two) = (first.snapshotter(), second.snapshotter());
        metrics::with_local_recorder(&first, || {
            count(Some(&decisions), RATE_LIMITED, &labels);
        });
        metrics::with_local_recorder(&second, || {
            count(Some(&decisions), RATE_LIMITED, &labels);
            count(Some(&decisions), RATE_LIMITED, &labels);
        });
        metrics::with_local_recorder(&first, || {
            count(Some(&decisions), RATE_LIMITED, &labels);
        });
        let series = "steadfast_rate_limited_total tier=free,outcome=rejected".to_owned();
        assert_eq!(counts(&one), [(series.clone(), 2)]);
        assert_eq!(counts(&two), [(series, 2)]);
        // One entry per series, whichever recorder kept it last.
        assert_eq!(decisions.series.get().map(papaya::HashMap::len), Some(1));
    }

    #[test]
    fn a_layer_that_never_decides_has_no_table() {
        let decisions = Decisions::new();
        assert!(decisions.series.get().is_none());
    }
}
