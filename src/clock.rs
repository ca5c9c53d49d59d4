//! Nanoseconds since a point on tokio's clock, measured without std's
//! out-of-line subtraction.
//!
//! std measures between two `Instant`s only by subtracting them, through
//! calls no caller can inline (`duration_since`, then `sub_timespec`: about
//! 55 instructions, then a `u128` of nanoseconds to narrow). Yet std's
//! `Instant` is, on Unix and Windows, a count of seconds and of nanoseconds,
//! and its (derived, inlined) `Hash` writes exactly those two numbers. So an
//! [`Origin`] reads its own and each reading's seconds and nanoseconds with
//! a hasher that keeps them, and measures with a subtraction, a
//! multiplication, an addition and a subtraction; that is only done when
//! the process has checked once, against std's subtraction, that what the
//! hasher reads measures the same time to the nanosecond. Otherwise
//! (another layout of `Instant`) it subtracts as std does.
//!
//! Either way the answer is exact: std's `saturating_duration_since` from
//! the origin, in nanoseconds, saturated at `u64::MAX`. The origin is the
//! instant it was made at, not a rounded one, so whatever is measured from
//! it (a breaker's buckets, say) starts when it was made, however long the
//! process ran before.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// A point on tokio's clock that later readings are measured from, in
/// nanoseconds (see the [module docs](self)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    instant: Instant,
    /// `instant`'s seconds and nanoseconds, when readings are measured from
    /// them.
    parts: Option<Parts>,
}

impl Origin {
    /// An origin at exactly `instant`.
    pub(crate) fn new(instant: Instant) -> Self {
        let parts = if parts_measure() {
            Parts::of(instant)
        } else {
            None
        };
        Self { instant, parts }
    }

    /// The origin's instant.
    #[inline]
    pub(crate) fn instant(&self) -> Instant {
        self.instant
    }

    /// Nanoseconds from the origin to `now`: zero if `now` is earlier,
    /// `u64::MAX` if further than that.
    #[inline]
    pub(crate) fn nanos_to(&self, now: Instant) -> u64 {
        if let Some(origin) = self.parts {
            if let Some(now) = Parts::of(now) {
                return origin.nanos_to(now);
            }
        }
        subtracted(self.instant, now)
    }
}

/// Nanoseconds from `earlier` to `later` by std's subtraction.
#[inline(never)]
pub(crate) fn subtracted(earlier: Instant, later: Instant) -> u64 {
    u64::try_from(later.saturating_duration_since(earlier).as_nanos()).unwrap_or(u64::MAX)
}

pub(crate) const NANOS_PER_SEC: i128 = 1_000_000_000;
pub(crate) const NANOS_PER_SEC_U64: u64 = 1_000_000_000;
/// Whole seconds whose nanoseconds, plus up to 10⁹ - 1 more, fit in a
/// `u64`.
pub(crate) const FAST_SECS: u64 = u64::MAX / NANOS_PER_SEC_U64 - 1;

/// An `Instant` as the seconds and nanoseconds its `Hash` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parts {
    pub(crate) secs: i64,
    pub(crate) nanos: u32,
}

impl Parts {
    /// `instant`'s seconds and nanoseconds, if its `Hash` writes a signed
    /// or unsigned 64-bit count, then a 32-bit count below 10⁹, and nothing
    /// else.
    #[inline]
    pub(crate) fn of(instant: Instant) -> Option<Self> {
        let mut reader = PartsReader::Secs;
        instant.hash(&mut reader);
        match reader {
            PartsReader::Done(secs, nanos) if i128::from(nanos) < NANOS_PER_SEC => {
                Some(Self { secs, nanos })
            }
            _ => None,
        }
    }

    /// Nanoseconds from `self` to `later`: zero if `later` is earlier,
    /// `u64::MAX` if further than that.
    #[inline]
    pub(crate) fn nanos_to(self, later: Self) -> u64 {
        // Whole seconds below `u64::MAX / 10⁹`, the span of almost every
        // reading: nothing to saturate, and only a reading earlier in the
        // same second can go below zero.
        if let Some(span) = later.secs.checked_sub(self.secs) {
            if let Ok(span @ 0..FAST_SECS) = u64::try_from(span) {
                return (span * NANOS_PER_SEC_U64 + u64::from(later.nanos))
                    .saturating_sub(u64::from(self.nanos));
            }
        }
        self.nanos_to_far(later)
    }

    /// [`nanos_to`](Self::nanos_to) for readings further apart, or
    /// earlier by a second or more.
    #[cold]
    #[inline(never)]
    pub(crate) fn nanos_to_far(self, later: Self) -> u64 {
        let secs = i128::from(later.secs) - i128::from(self.secs);
        let nanos = i128::from(later.nanos) - i128::from(self.nanos);
        let total = secs * NANOS_PER_SEC + nanos;
        if total <= 0 {
            0
        } else {
            u64::try_from(total).unwrap_or(u64::MAX)
        }
    }
}

/// A hasher that keeps what an `Instant`'s `Hash` writes, if it is a
/// count of seconds then one of nanoseconds.
#[derive(Debug)]
enum PartsReader {
    /// Nothing written yet.
    Secs,
    /// The seconds written.
    Nanos(i64),
    /// Both written.
    Done(i64, u32),
    /// Anything else.
    Other,
}

impl Hasher for PartsReader {
    #[inline]
    fn finish(&self) -> u64 {
        0
    }

    #[inline]
    fn write(&mut self, _bytes: &[u8]) {
        *self = Self::Other;
    }

    #[inline]
    fn write_i64(&mut self, secs: i64) {
        *self = match *self {
            Self::Secs => Self::Nanos(secs),
            _ => Self::Other,
        };
    }

    #[inline]
    fn write_u64(&mut self, secs: u64) {
        *self = match (&*self, i64::try_from(secs)) {
            (Self::Secs, Ok(secs)) => Self::Nanos(secs),
            _ => Self::Other,
        };
    }

    #[inline]
    fn write_u32(&mut self, nanos: u32) {
        *self = match *self {
            Self::Nanos(secs) => Self::Done(secs, nanos),
            _ => Self::Other,
        };
    }
}

/// Whether [`Parts`] measure time exactly as std's subtraction does, here:
/// checked once per process over spans that cross a second, borrow
/// nanoseconds and reach far.
pub(crate) fn parts_measure() -> bool {
    static MEASURE: OnceLock<bool> = OnceLock::new();
    *MEASURE.get_or_init(|| {
        let base = Instant::now();
        let Some(origin) = Parts::of(base) else {
            return false;
        };
        SPANS.iter().all(|&(secs, nanos)| {
            let span = Duration::new(secs, nanos);
            [base.checked_add(span), base.checked_sub(span)]
                .into_iter()
                .flatten()
                .all(|other| {
                    Parts::of(other).is_some_and(|parts| {
                        origin.nanos_to(parts) == subtracted(base, other)
                            && parts.nanos_to(origin) == subtracted(other, base)
                    })
                })
        })
    })
}

/// The spans [`parts_measure`] checks, as seconds and nanoseconds.
const SPANS: [(u64, u32); 10] = [
    (0, 0),
    (0, 1),
    (0, 999_999_999),
    (1, 0),
    (1, 1),
    (1, 999_999_999),
    (59, 500_000_001),
    (86_400 * 365, 123_456_789),
    (18_446_744_073, 709_551_615),
    (18_446_744_074, 0),
];

/// What the tests of this module and of the rate limiter's clock measure
/// against.
#[cfg(test)]
pub(crate) mod checks {
    use proptest::prelude::*;

    use super::{NANOS_PER_SEC, Parts};

    /// Nanoseconds from `a` to `b`, worked out in `i128` without shortcut.
    pub(crate) fn exact(a: Parts, b: Parts) -> u64 {
        let total = (i128::from(b.secs) - i128::from(a.secs)) * NANOS_PER_SEC + i128::from(b.nanos)
            - i128::from(a.nanos);
        u64::try_from(total.max(0)).unwrap_or(u64::MAX)
    }

    /// Readings near and far, at the ends of the range and across
    /// seconds.
    pub(crate) fn parts() -> impl Strategy<Value = Parts> {
        let secs = prop_oneof![
            any::<i64>(),
            -3i64..3,
            1_000_000i64..1_000_010,
            Just(i64::MIN),
            Just(i64::MAX),
        ];
        let nanos = prop_oneof![0u32..1_000_000_000, Just(0), Just(999_999_999)];
        (secs, nanos).prop_map(|(secs, nanos)| Parts { secs, nanos })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::checks::{exact, parts};
    use super::*;

    #[test]
    fn readings_are_read_as_seconds_and_nanoseconds_here() {
        // std's `Instant` on Unix and Windows: the fast path is the one taken.
        assert!(parts_measure());
        let now = Instant::now();
        let origin = Origin::new(now);
        assert!(origin.parts.is_some());
        // Exactly where it was made: not moved to a whole second.
        assert_eq!(origin.instant(), now);
        assert_eq!(origin.nanos_to(now), 0);
    }

    proptest! {
        /// The shortcut is the exact span, for any two readings, near or
        /// far, either way round.
        #[test]
        fn parts_measure_exactly(a in parts(), b in parts(), near in 0u64..3_000_000_000) {
            prop_assert_eq!(a.nanos_to(b), exact(a, b));
            let secs = a.secs.saturating_add(i64::try_from(near / 1_000_000_000).unwrap());
            let c = Parts { secs, nanos: u32::try_from(near % 1_000_000_000).unwrap() };
            prop_assert_eq!(a.nanos_to(c), exact(a, c));
            prop_assert_eq!(c.nanos_to(a), exact(c, a));
        }

        /// An origin measures any reading as std's subtraction does.
        #[test]
        fn origins_measure_as_std_subtracts(
            secs in prop_oneof![0u64..3, 0u64..100_000, 0u64..(1 << 40)],
            nanos in 0u32..1_000_000_000,
            earlier in any::<bool>(),
        ) {
            let base = Instant::now();
            let origin = Origin::new(base);
            let span = Duration::new(secs, nanos);
            let other = if earlier { base.checked_sub(span) } else { base.checked_add(span) };
            if let Some(other) = other {
                prop_assert_eq!(origin.nanos_to(other), subtracted(base, other));
                let from_other = Origin::new(other);
                prop_assert_eq!(from_other.nanos_to(base), subtracted(other, base));
            }
        }
    }
}
