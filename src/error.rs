//! Errors: rejection markers, configuration errors and [`BoxError`].
//!
//! Layers that add errors return [`BoxError`], as tower's own middleware
//! does. Every way a policy can refuse to call the inner service is a small
//! marker type, checked with [`is`](https://doc.rust-lang.org/std/error/trait.Error.html#method.is)
//! on the boxed error:
//!
//! ```
//! use steadfast::error::{BoxError, CircuitOpen};
//!
//! fn is_circuit_open(err: &BoxError) -> bool {
//!     err.is::<CircuitOpen>()
//! }
//! # assert!(!is_circuit_open(&"boom".into()));
//! ```
//!
//! Markers that know when a call could succeed again carry that duration
//! ([`CircuitOpen::remaining`], [`RateLimited::retry_after`]), so that a
//! server can answer with `Retry-After` and a client can wait for it.

use std::any::Any;
use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// A type-erased, thread-safe error, as used throughout tower.
pub type BoxError = Box<dyn Error + Send + Sync>;

macro_rules! marker_error {
    ($(#[$doc:meta])* $name:ident, $msg:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name(());

        impl $name {
            /// Creates the error.
            pub const fn new() -> Self {
                Self(())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad($msg)
            }
        }

        impl Error for $name {}
    };
}

marker_error!(
    /// An attempt took longer than its attempt timeout.
    ///
    /// Returned by [`Timeout`](crate::timeout::Timeout). Classified as a
    /// transient failure: the call may be retried.
    Elapsed,
    "request timed out"
);

marker_error!(
    /// The total deadline of the logical call passed.
    ///
    /// Returned by [`TotalDeadline`](crate::timeout::TotalDeadline), and by an
    /// attempt timeout that was cut short by the total deadline. A rejection:
    /// no policy retries it. A circuit breaker still counts an attempt made
    /// before the deadline and ended by it as a failure.
    DeadlineExceeded,
    "deadline exceeded"
);

marker_error!(
    /// The bulkhead had no free permit within its maximum wait.
    BulkheadFull,
    "bulkhead full"
);

marker_error!(
    /// The adaptive concurrency limit had no room for the call.
    ///
    /// Returned by [`Adaptive`](crate::adaptive::Adaptive). A rejection, as
    /// [`BulkheadFull`] is.
    ConcurrencyLimited,
    "concurrency limited"
);

marker_error!(
    /// Client-side adaptive throttling refused the call locally, because the
    /// dependency accepts too few of the calls it is sent.
    ///
    /// Returned by [`Adaptive`](crate::adaptive::Adaptive) with a
    /// [`Throttle`](crate::adaptive::Throttle). A rejection: no policy
    /// retries it.
    ClientThrottled,
    "throttled by client"
);

/// The circuit breaker is open and refused the call without making it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    remaining: Duration,
}

impl CircuitOpen {
    /// Creates the error; `remaining` is how long the circuit stays open.
    pub const fn new(remaining: Duration) -> Self {
        Self { remaining }
    }

    /// How long the circuit stays open before it lets a probe through.
    ///
    /// Zero when the breaker is half-open with every probe slot taken, or
    /// forced open (then it is unknown).
    pub const fn remaining(&self) -> Duration {
        self.remaining
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("circuit open")
    }
}

impl Error for CircuitOpen {}

/// The rate limiter refused the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    retry_after: Duration,
}

impl RateLimited {
    /// Creates the error; `retry_after` is the wait until a call would be allowed.
    pub const fn new(retry_after: Duration) -> Self {
        Self { retry_after }
    }

    /// How long until a call with the same key would be allowed.
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("rate limited")
    }
}

impl Error for RateLimited {}

/// Retry gave up because the callee asked to be retried later than allowed.
///
/// Returned when a retry-after hint exceeds the time left before the total
/// deadline or the retry policy's configured maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryAfterTooLong {
    requested: Duration,
    allowed: Duration,
}

impl RetryAfterTooLong {
    /// Creates the error.
    pub const fn new(requested: Duration, allowed: Duration) -> Self {
        Self { requested, allowed }
    }

    /// The wait the callee asked for.
    pub const fn requested(&self) -> Duration {
        self.requested
    }

    /// The longest wait the policy allowed at that point.
    pub const fn allowed(&self) -> Duration {
        self.allowed
    }
}

impl fmt::Display for RetryAfterTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "callee asked to retry after {:?}, longer than the {:?} allowed",
            self.requested, self.allowed
        )
    }
}

impl Error for RetryAfterTooLong {}

/// Which of this crate's policies refused a call: the one answer to "which
/// rejection is this error?".
///
/// Every refusal marker has a variant. [`Rejection::of`] finds the marker
/// in an error or its sources; classifiers, the fallback's
/// [`Reason`](crate::fallback::Reason), the HTTP and gRPC error responses,
/// events and metrics all read refusals through it.
///
/// ```
/// use std::time::Duration;
/// use steadfast::error::{BoxError, CircuitOpen, Rejection};
///
/// let err: BoxError = Box::new(CircuitOpen::new(Duration::from_secs(3)));
/// assert_eq!(
///     Rejection::of(&*err),
///     Some((Rejection::CircuitOpen, Some(Duration::from_secs(3))))
/// );
/// assert_eq!(Rejection::CircuitOpen.as_str(), "circuit_open");
/// assert_eq!(Rejection::of(&std::io::Error::other("reset")), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// A circuit breaker is open ([`CircuitOpen`]).
    CircuitOpen,
    /// A bulkhead is full ([`BulkheadFull`]).
    BulkheadFull,
    /// A rate limiter refused the call ([`RateLimited`]).
    RateLimited,
    /// The total deadline passed ([`DeadlineExceeded`]).
    DeadlineExceeded,
    /// An adaptive concurrency limit had no room ([`ConcurrencyLimited`]).
    ConcurrencyLimited,
    /// Client-side adaptive throttling refused the call ([`ClientThrottled`]).
    ClientThrottled,
}

/// How deep [`Rejection::of`] looks into an error's sources.
const MAX_SOURCES: usize = 32;

impl Rejection {
    /// A stable lowercase name, as used in events and metric labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Rejection::CircuitOpen => "circuit_open",
            Rejection::BulkheadFull => "bulkhead_full",
            Rejection::RateLimited => "rate_limited",
            Rejection::DeadlineExceeded => "deadline_exceeded",
            Rejection::ConcurrencyLimited => "concurrency_limited",
            Rejection::ClientThrottled => "client_throttled",
        }
    }

    /// The refusal marker in `err` or in its sources (the first found,
    /// looking at most 32 errors deep), with the wait the marker carries:
    /// [`CircuitOpen::remaining`] or [`RateLimited::retry_after`].
    ///
    /// A marker wrapped by another error (a client's error around a
    /// refusal of a layer inside its connector) is found too.
    pub fn of(err: &(dyn Error + 'static)) -> Option<(Rejection, Option<Duration>)> {
        let mut next = Some(err);
        for _ in 0..MAX_SOURCES {
            let err = next?;
            if let Some(found) = Self::marker(err) {
                return Some(found);
            }
            next = err.source();
        }
        None
    }

    /// The marker `err` itself is, if any; its sources are not read.
    fn marker(err: &(dyn Error + 'static)) -> Option<(Rejection, Option<Duration>)> {
        let found = if let Some(open) = err.downcast_ref::<CircuitOpen>() {
            (Rejection::CircuitOpen, Some(open.remaining))
        } else if let Some(limited) = err.downcast_ref::<RateLimited>() {
            (Rejection::RateLimited, Some(limited.retry_after))
        } else if err.is::<BulkheadFull>() {
            (Rejection::BulkheadFull, None)
        } else if err.is::<DeadlineExceeded>() {
            (Rejection::DeadlineExceeded, None)
        } else if err.is::<ConcurrencyLimited>() {
            (Rejection::ConcurrencyLimited, None)
        } else if err.is::<ClientThrottled>() {
            (Rejection::ClientThrottled, None)
        } else {
            return None;
        };
        Some(found)
    }

    /// [`Rejection::of`] for an error of any type: a [`BoxError`], one of
    /// this module's markers, [`std::io::Error`], and (with their features)
    /// `reqwest::Error` and hyper-util's client error; `None` for errors of
    /// other types.
    pub fn of_any<E: 'static>(err: &E) -> Option<(Rejection, Option<Duration>)> {
        as_error(err).and_then(Self::of)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// `err` as an error trait object, when its type is one this crate reads:
/// a [`BoxError`], a marker of this module, [`std::io::Error`], and (with
/// their features) `reqwest::Error` and hyper-util's client error.
pub(crate) fn as_error<E: 'static>(err: &E) -> Option<&(dyn Error + 'static)> {
    let any: &dyn Any = err;
    macro_rules! read {
        ($($ty:ty),* $(,)?) => {
            $(
                if let Some(err) = any.downcast_ref::<$ty>() {
                    return Some(err);
                }
            )*
        };
    }
    if let Some(boxed) = any.downcast_ref::<BoxError>() {
        return Some(&**boxed);
    }
    read!(
        CircuitOpen,
        RateLimited,
        BulkheadFull,
        DeadlineExceeded,
        ConcurrencyLimited,
        ClientThrottled,
        Elapsed,
        RetryAfterTooLong,
        std::io::Error,
    );
    #[cfg(feature = "reqwest")]
    read!(reqwest::Error);
    #[cfg(feature = "hyper")]
    read!(hyper_util::client::legacy::Error);
    None
}

/// Recognises the rejection markers of this crate in an error.
///
/// Returns `Some(hint)` when `err` is one of the markers by which a policy
/// refuses to call (circuit open, bulkhead full, concurrency limited,
/// throttled by client, rate limited, deadline passed), or holds one among
/// its sources, with the wait the marker carries, if any. Works for errors
/// that are the marker itself or a [`BoxError`] holding it. Which marker it
/// was, [`Rejection::of_any`] says.
pub fn rejection<E: 'static>(err: &E) -> Option<Option<Duration>> {
    Rejection::of_any(err).map(|(_, wait)| wait)
}

/// A setting that cannot work, found when a policy is built.
///
/// It names the field, the value it was given and the rule it breaks; for a
/// conflict between two settings it names both.
///
/// ```
/// use std::time::Duration;
/// use steadfast::retry::RetryLayer;
///
/// let err = RetryLayer::builder().max_attempts(0).build().unwrap_err();
/// assert_eq!(err.field(), "retry.max_attempts");
/// assert_eq!(err.value(), "0");
/// assert_eq!(
///     err.to_string(),
///     "invalid setting `retry.max_attempts` = 0: must be at least 1"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: Cow<'static, str>,
    value: String,
    rule: Cow<'static, str>,
    other: Option<(Cow<'static, str>, String)>,
}

impl ConfigError {
    /// A setting whose value breaks `rule`.
    pub fn new(
        field: impl Into<Cow<'static, str>>,
        value: impl fmt::Debug,
        rule: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            field: field.into(),
            value: debug_value(&value),
            rule: rule.into(),
            other: None,
        }
    }

    /// Two settings that cannot hold together.
    pub fn conflict(
        field: impl Into<Cow<'static, str>>,
        value: impl fmt::Debug,
        other_field: impl Into<Cow<'static, str>>,
        other_value: impl fmt::Debug,
        rule: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            field: field.into(),
            value: debug_value(&value),
            rule: rule.into(),
            other: Some((other_field.into(), debug_value(&other_value))),
        }
    }

    /// A setting that could not be read at all (a value of the wrong
    /// type, an unknown field): no value, only the reason.
    #[cfg(feature = "serde")]
    pub(crate) fn unreadable(field: String, rule: String) -> Self {
        Self {
            field: field.into(),
            value: String::new(),
            rule: rule.into(),
            other: None,
        }
    }

    /// The same error with its field, and the other field of a conflict,
    /// placed under `prefix`: `retry.max_attempts` under
    /// `routes."/users/{id}"` is `routes."/users/{id}".retry.max_attempts`.
    /// Configuration files report their errors so.
    ///
    /// ```
    /// use steadfast::retry::RetryLayer;
    ///
    /// let err = RetryLayer::builder().max_attempts(0).build().unwrap_err();
    /// let err = err.within("policies.api");
    /// assert_eq!(err.field(), "policies.api.retry.max_attempts");
    /// ```
    pub fn within(mut self, prefix: impl fmt::Display) -> Self {
        self.field = format!("{prefix}.{}", self.field).into();
        if let Some((other, _)) = &mut self.other {
            *other = format!("{prefix}.{other}").into();
        }
        self
    }

    /// The setting at fault, as `layer.setting` (with the path that leads
    /// to it, for a setting read from a file).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The value it was given (empty if it could not be read).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The rule the value breaks.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// For a conflict, the other setting and its value.
    pub fn other(&self) -> Option<(&str, &str)> {
        self.other.as_ref().map(|(f, v)| (&**f, v.as_str()))
    }
}

fn debug_value(value: &dyn fmt::Debug) -> String {
    let text = format!("{value:?}");
    // Strings read better without their quotes.
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .map_or_else(|| text.clone(), str::to_owned)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.other {
            None if self.value.is_empty() => {
                write!(f, "invalid setting `{}`: {}", self.field, self.rule)
            }
            None => write!(
                f,
                "invalid setting `{}` = {}: {}",
                self.field, self.value, self.rule
            ),
            Some((other, other_value)) => write!(
                f,
                "conflicting settings `{}` = {} and `{}` = {}: {}",
                self.field, self.value, other, other_value, self.rule
            ),
        }
    }
}

impl Error for ConfigError {}

/// Checks shared by every builder.
pub(crate) mod check {
    use super::ConfigError;
    use std::time::Duration;

    pub(crate) fn positive(field: &'static str, d: Duration) -> Result<Duration, ConfigError> {
        if d.is_zero() {
            Err(ConfigError::new(field, d, "must be greater than zero"))
        } else {
            Ok(d)
        }
    }

    pub(crate) fn at_least<T: PartialOrd + std::fmt::Debug + Copy>(
        field: &'static str,
        value: T,
        min: T,
    ) -> Result<T, ConfigError> {
        if value < min {
            Err(ConfigError::new(
                field,
                value,
                format!("must be at least {min:?}"),
            ))
        } else {
            Ok(value)
        }
    }

    /// `value` must lie in `(low, high]`; NaN never does.
    pub(crate) fn in_half_open(
        field: &'static str,
        value: f64,
        low: f64,
        high: f64,
    ) -> Result<f64, ConfigError> {
        if value > low && value <= high {
            Ok(value)
        } else {
            Err(ConfigError::new(
                field,
                value,
                format!("must be greater than {low} and at most {high}"),
            ))
        }
    }

    /// `value` must lie in `[low, high]`; NaN never does.
    pub(crate) fn in_closed(
        field: &'static str,
        value: f64,
        low: f64,
        high: f64,
    ) -> Result<f64, ConfigError> {
        if (low..=high).contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(
                field,
                value,
                format!("must be between {low} and {high}"),
            ))
        }
    }

    /// `value` must not exceed `limit`, another setting.
    pub(crate) fn not_above(
        field: &'static str,
        value: Duration,
        other: &'static str,
        limit: Duration,
        rule: &'static str,
    ) -> Result<Duration, ConfigError> {
        if value > limit {
            Err(ConfigError::conflict(field, value, other, limit, rule))
        } else {
            Ok(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_recognises_markers_boxed_or_not() {
        let boxed: BoxError = Box::new(CircuitOpen::new(Duration::from_secs(3)));
        assert_eq!(rejection(&boxed), Some(Some(Duration::from_secs(3))));
        let boxed: BoxError = Box::new(BulkheadFull::new());
        assert_eq!(rejection(&boxed), Some(None));
        assert_eq!(
            rejection(&RateLimited::new(Duration::from_millis(7))),
            Some(Some(Duration::from_millis(7)))
        );
        assert_eq!(rejection(&DeadlineExceeded::new()), Some(None));
        let other: BoxError = "connection reset".into();
        assert_eq!(rejection(&other), None);
        assert_eq!(rejection(&Elapsed::new()), None);
        assert_eq!(rejection(&std::io::Error::other("x")), None);
    }

    #[derive(Debug)]
    struct Wrapped(BoxError);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("client error")
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn every_marker_is_one_rejection_found_among_the_sources() {
        let wait = Some(Duration::from_millis(7));
        let cases: [(BoxError, Rejection, Option<Duration>); 6] = [
            (
                Box::new(CircuitOpen::new(Duration::from_millis(7))),
                Rejection::CircuitOpen,
                wait,
            ),
            (
                Box::new(RateLimited::new(Duration::from_millis(7))),
                Rejection::RateLimited,
                wait,
            ),
            (Box::new(BulkheadFull::new()), Rejection::BulkheadFull, None),
            (
                Box::new(DeadlineExceeded::new()),
                Rejection::DeadlineExceeded,
                None,
            ),
            (
                Box::new(ConcurrencyLimited::new()),
                Rejection::ConcurrencyLimited,
                None,
            ),
            (
                Box::new(ClientThrottled::new()),
                Rejection::ClientThrottled,
                None,
            ),
        ];
        for (err, kind, wait) in cases {
            assert_eq!(Rejection::of(&*err), Some((kind, wait)), "{err}");
            assert_eq!(Rejection::of_any(&err), Some((kind, wait)), "{err}");
            let wrapped: BoxError = Box::new(Wrapped(Box::new(Wrapped(err))));
            assert_eq!(
                Rejection::of(&*wrapped),
                Some((kind, wait)),
                "wrapped {kind}"
            );
            assert_eq!(rejection(&wrapped), Some(wait));
        }
        assert_eq!(
            Rejection::of_any(&BulkheadFull::new()),
            Some((Rejection::BulkheadFull, None))
        );
        assert_eq!(Rejection::of_any(&Elapsed::new()), None);
        assert_eq!(Rejection::of_any(&42_u8), None, "not an error type");
        let plain: BoxError = Box::new(Wrapped("reset".into()));
        assert_eq!(Rejection::of(&*plain), None);
    }

    #[test]
    fn config_error_names_field_value_and_rule() {
        let err = ConfigError::new("retry.jitter", 1.5, "must be between 0 and 1");
        assert_eq!(
            err.to_string(),
            "invalid setting `retry.jitter` = 1.5: must be between 0 and 1"
        );
        let err = ConfigError::conflict(
            "timeout.attempt",
            Duration::from_secs(5),
            "timeout.total",
            Duration::from_secs(2),
            "the attempt timeout must not exceed the total timeout",
        );
        assert_eq!(err.other(), Some(("timeout.total", "2s")));
        assert!(err.to_string().contains("`timeout.attempt` = 5s"));
    }

    #[test]
    fn checks_reject_nan() {
        assert!(check::in_half_open("f", f64::NAN, 0.0, 1.0).is_err());
        assert!(check::in_closed("f", f64::NAN, 0.0, 1.0).is_err());
        assert!(check::in_half_open("f", 0.0, 0.0, 1.0).is_err());
        assert!(check::in_half_open("f", 1.0, 0.0, 1.0).is_ok());
    }
}
