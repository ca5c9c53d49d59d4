//! A governor clock that reads tokio's clock, so that limits follow paused
//! time in tests.

use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;
use tokio::time::Instant;

use crate::clock::{FAST_SECS, NANOS_PER_SEC_U64, Parts, parts_measure, subtracted};

/// A reading of tokio's clock, as governor wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TokioInstant(pub(crate) Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;

    fn add(self, other: Nanos) -> Self {
        // Never panics: a sum past what `Instant` can hold stays put.
        let other: Duration = other.into();
        Self(self.0.checked_add(other).unwrap_or(self.0))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        let duration: Duration = duration.into();
        self.0.checked_sub(duration).map_or(*self, Self)
    }
}

/// Governor's clock over [`tokio::time::Instant`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;

    #[inline]
    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

/// A point on tokio's clock that later readings are measured from, in
/// nanoseconds.
///
/// Readings are measured from their seconds and nanoseconds, as the
/// breaker's origin measures them ([`crate::clock`]: std's subtraction is
/// about 50 instructions, more than the rest of a limiter's decision),
/// but from the whole second at or before the instant the origin is made
/// at, so that a limiter's check can measure with one subtraction, one
/// multiplication and one addition. Where the process's `Instant` is not
/// read that way it subtracts as std does. Either way the answer is std's
/// `saturating_duration_since` in nanoseconds, saturated at `u64::MAX`.
///
/// A limiter's check asks [`near`](Origin::near) first: a reading less
/// than 2^63 nanoseconds (292 years) after the origin, measured with one
/// subtraction, one comparison, one multiplication and one addition, in
/// the reading's own units up to the multiplication.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    instant: Instant,
    /// `instant`'s seconds, when readings are measured from them: the
    /// origin is then on a whole second (its nanoseconds are zero).
    secs: Option<i64>,
    /// `secs` as an unsigned count, for [`near`](Self::near); zero when
    /// `near` measures nothing.
    base: u64,
    /// How many whole seconds after `base` a reading may be for
    /// [`near`](Self::near) to measure it: [`NEAR_SECS`], or zero (every
    /// reading is then measured by [`nanos_to`](Self::nanos_to)).
    near: u64,
}

impl Origin {
    /// An origin at `instant`, or at the whole second before it when
    /// readings are measured from their seconds and nanoseconds.
    pub(crate) fn new(instant: Instant) -> Self {
        if parts_measure() {
            if let Some(parts) = Parts::of(instant) {
                let whole = instant.checked_sub(Duration::from_nanos(u64::from(parts.nanos)));
                let secs = parts.secs;
                if let Some(whole) = whole {
                    if Parts::of(whole) == Some(Parts { secs, nanos: 0 }) {
                        let (base, near) = near_from(secs);
                        return Self {
                            instant: whole,
                            secs: Some(secs),
                            base,
                            near,
                        };
                    }
                }
            }
        }
        Self::far(instant)
    }

    /// An origin at `instant` whose readings are all measured by
    /// [`nanos_to`](Self::nanos_to): [`near`](Self::near) measures none.
    pub(crate) fn far(instant: Instant) -> Self {
        Self {
            instant,
            secs: None,
            base: 0,
            near: 0,
        }
    }

    /// Without [`near`](Self::near): every reading is measured by
    /// [`nanos_to`](Self::nanos_to).
    pub(crate) fn without_near(self) -> Self {
        Self {
            base: 0,
            near: 0,
            ..self
        }
    }

    /// Nanoseconds from the origin to `now`, if `now` is not earlier and
    /// less than 2^63 nanoseconds (292 years) later, and the origin
    /// measures readings from their seconds and nanoseconds; `None`
    /// otherwise (then [`nanos_to`](Self::nanos_to) measures it). Where it
    /// answers, the answer is `nanos_to`'s.
    #[inline]
    pub(crate) fn near(&self, now: Instant) -> Option<u64> {
        nanos_near(self.base, self.near, Parts::of(now)?)
    }

    /// Whether [`near`](Self::near) measures any reading.
    pub(crate) fn measures_near(&self) -> bool {
        self.near != 0
    }

    /// What [`near`](Self::near) measures from, for [`near_of`]: a copy
    /// a service value keeps, so that its leased calls read nothing shared.
    #[inline]
    pub(crate) fn near_parts(&self) -> (u64, u64) {
        (self.base, self.near)
    }

    /// The origin's instant.
    #[inline]
    pub(crate) fn instant(&self) -> Instant {
        self.instant
    }

    /// Nanoseconds from the origin to `now` (zero if `now` is earlier;
    /// `u64::MAX` if further than that).
    #[inline]
    pub(crate) fn nanos_to(&self, now: Instant) -> u64 {
        if let Some(secs) = self.secs {
            if let Some(now) = Parts::of(now) {
                return nanos_since_second(secs, now);
            }
        }
        subtracted(self.instant, now)
    }
}

/// [`Origin::near`] of an origin whose [`Origin::near_parts`] are `base`
/// and `near`.
#[inline]
pub(crate) fn near_of((base, near): (u64, u64), now: Instant) -> Option<u64> {
    nanos_near(base, near, Parts::of(now)?)
}

/// Nanoseconds from the whole second `secs` to `later`, as
/// [`Parts::nanos_to`] from `secs` and no nanoseconds.
#[inline]
fn nanos_since_second(secs: i64, later: Parts) -> u64 {
    // Whole seconds below `u64::MAX / 10⁹`, the span of almost every
    // reading: nothing to saturate.
    if let Some(span) = later.secs.checked_sub(secs) {
        if let Ok(span @ 0..FAST_SECS) = u64::try_from(span) {
            return span * NANOS_PER_SEC_U64 + u64::from(later.nanos);
        }
    }
    Parts { secs, nanos: 0 }.nanos_to_far(later)
}

/// The `base` and `near` of an origin on the whole second `secs`: near
/// readings measured from `secs` for an origin in `0..2^62` seconds, none
/// otherwise (outside that range, a reading's seconds less the origin's
/// could wrap into the near range).
fn near_from(secs: i64) -> (u64, u64) {
    match u64::try_from(secs) {
        Ok(base @ 0..NEAR_BASE) => (base, NEAR_SECS),
        _ => (0, 0),
    }
}

/// Nanoseconds from the whole second `base` to `later`, if `later` is not
/// earlier and less than `near` whole seconds after it; `near` is
/// [`NEAR_SECS`] or zero, and `base` below [`NEAR_BASE`].
///
/// The seconds are subtracted without a check: with `base` below 2^62, a
/// reading earlier than `base` wraps to at least 2^62, far above
/// [`NEAR_SECS`], so the one comparison rejects it as it rejects a reading
/// too far ahead. A span below [`NEAR_SECS`] seconds, plus up to 10⁹ - 1
/// nanoseconds, is below 2^63 nanoseconds.
#[inline]
fn nanos_near(base: u64, near: u64, later: Parts) -> Option<u64> {
    // The seconds' two's complement, wrapped on purpose (see above).
    let span = (later.secs as u64).wrapping_sub(base);
    if span < near {
        Some(span * NANOS_PER_SEC_U64 + u64::from(later.nanos))
    } else {
        None
    }
}

/// Whole seconds whose nanoseconds, plus up to 10⁹ - 1 more, are below
/// 2^63: the span [`Origin::near`] measures.
pub(crate) const NEAR_SECS: u64 = (1 << 63) / NANOS_PER_SEC_U64;
/// The origins [`Origin::near`] measures from: on a second below 2^62.
const NEAR_BASE: u64 = 1 << 62;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::clock::checks::{exact, parts};

    #[test]
    fn readings_are_read_as_seconds_and_nanoseconds_here() {
        // std's `Instant` on Unix and Windows: the fast path is the one taken.
        assert!(parts_measure());
        let origin = Origin::new(Instant::now());
        assert!(origin.secs.is_some());
        let later = origin.instant() + Duration::from_millis(1_500);
        assert_eq!(
            origin.near(later),
            Some(subtracted(origin.instant(), later))
        );
    }

    proptest! {
        /// The shortcut from a whole second is the exact span, for any two
        /// readings, near or far, either way round.
        #[test]
        fn whole_seconds_measure_exactly(a in parts(), b in parts(), near in 0u64..3_000_000_000) {
            let whole = Parts { nanos: 0, ..a };
            prop_assert_eq!(nanos_since_second(a.secs, b), exact(whole, b));
            let secs = a.secs.saturating_add(i64::try_from(near / 1_000_000_000).unwrap());
            let c = Parts { secs, nanos: u32::try_from(near % 1_000_000_000).unwrap() };
            prop_assert_eq!(nanos_since_second(a.secs, c), exact(whole, c));
        }

        /// A near reading is measured exactly, below 2^63 nanoseconds, and
        /// every reading from a second in `0..2^62` to less than
        /// `NEAR_SECS` seconds later is near, whatever the two seconds.
        #[test]
        fn near_readings_measure_exactly(
            a in parts(),
            b in parts(),
            near in 0u64..3_000_000_000,
            ahead in prop_oneof![0u64..NEAR_SECS, Just(NEAR_SECS - 1), Just(NEAR_SECS)],
        ) {
            let secs = a.secs.rem_euclid(1 << 62);
            let (base, limit) = near_from(secs);
            prop_assert_eq!((base, limit), (secs as u64, NEAR_SECS));
            let whole = Parts { secs, nanos: 0 };
            let later = |span: u64, nanos: u32| Parts {
                secs: secs.saturating_add(i64::try_from(span).unwrap()),
                nanos,
            };
            let near_secs = near / 1_000_000_000;
            let near_nanos = u32::try_from(near % 1_000_000_000).unwrap();
            for other in [b, later(near_secs, near_nanos), later(ahead, b.nanos)] {
                let exact = exact(whole, other);
                match nanos_near(base, limit, other) {
                    Some(nanos) => {
                        prop_assert_eq!(nanos, exact);
                        prop_assert!(nanos < 1 << 63);
                    }
                    None => prop_assert!(
                        other.secs < secs || (other.secs - secs) as u64 >= NEAR_SECS
                    ),
                }
            }
            // An origin outside `0..2^62` measures nothing near.
            let (base, limit) = near_from(a.secs);
            if !(0..1 << 62).contains(&a.secs) {
                prop_assert_eq!((base, limit), (0, 0));
                prop_assert_eq!(nanos_near(base, limit, b), None);
            }
        }

        /// An origin measures any reading as std's subtraction does.
        #[test]
        fn origins_measure_as_std_subtracts(
            secs in prop_oneof![0u64..3, 0u64..100_000, 0u64..(1 << 40)],
            nanos in 0u32..1_000_000_000,
            earlier in any::<bool>(),
        ) {
            let origin = Origin::new(Instant::now());
            let base = origin.instant();
            let span = Duration::new(secs, nanos);
            let other = if earlier { base.checked_sub(span) } else { base.checked_add(span) };
            if let Some(other) = other {
                prop_assert_eq!(origin.nanos_to(other), subtracted(base, other));
                if let Some(near) = origin.near(other) {
                    prop_assert_eq!(near, subtracted(base, other));
                }
                prop_assert_eq!(origin.without_near().near(other), None);
                let from_other = Origin::new(other);
                let (start, end) = (from_other.instant(), base);
                prop_assert_eq!(from_other.nanos_to(end), subtracted(start, end));
            }
        }
    }
}
