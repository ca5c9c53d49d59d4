//! A governor clock that reads tokio's clock, so that limits follow paused
//! time in tests.

use std::hash::{Hash, Hasher};
use std::ops::Add;
use std::sync::OnceLock;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;
use tokio::time::Instant;

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
/// std measures between two `Instant`s only by subtracting them, through
/// calls no caller can inline (about 50 instructions, more than the rest
/// of a limiter's decision). Yet std's `Instant` is, on Unix and Windows,
/// a count of seconds and of nanoseconds, and its
/// (derived, inlined) `Hash` writes exactly those two numbers. So an
/// origin reads a reading's seconds and nanoseconds with a hasher that
/// keeps them and, from a whole second, measures with one subtraction, one
/// multiplication and one addition; that is only done when the process has
/// checked once, against std's subtraction, that what the hasher reads
/// measures the same time to the nanosecond.
/// Otherwise (another layout of `Instant`) it subtracts as std does. Either
/// way the answer is std's `saturating_duration_since` in nanoseconds,
/// saturated at `u64::MAX`.
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

/// Nanoseconds from `earlier` to `later` by std's subtraction.
#[inline(never)]
fn subtracted(earlier: Instant, later: Instant) -> u64 {
    u64::try_from(later.saturating_duration_since(earlier).as_nanos()).unwrap_or(u64::MAX)
}

const NANOS_PER_SEC: i128 = 1_000_000_000;
const NANOS_PER_SEC_U64: u64 = 1_000_000_000;
/// Whole seconds whose nanoseconds, plus up to 10⁹ - 1 more, fit in a
/// `u64`.
const FAST_SECS: u64 = u64::MAX / NANOS_PER_SEC_U64 - 1;
/// Whole seconds whose nanoseconds, plus up to 10⁹ - 1 more, are below
/// 2^63: the span [`Origin::near`] measures.
pub(crate) const NEAR_SECS: u64 = (1 << 63) / NANOS_PER_SEC_U64;
/// The origins [`Origin::near`] measures from: on a second below 2^62.
const NEAR_BASE: u64 = 1 << 62;

/// An `Instant` as the seconds and nanoseconds its `Hash` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parts {
    secs: i64,
    nanos: u32,
}

impl Parts {
    /// `instant`'s seconds and nanoseconds, if its `Hash` writes a signed
    /// or unsigned 64-bit count, then a 32-bit count below 10⁹, and nothing
    /// else.
    #[inline]
    fn of(instant: Instant) -> Option<Self> {
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
    fn nanos_to(self, later: Self) -> u64 {
        self.nanos_to_far(later)
    }

    /// [`nanos_to`](Self::nanos_to), out of the way of a limiter's check.
    #[cold]
    #[inline(never)]
    fn nanos_to_far(self, later: Self) -> u64 {
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
fn parts_measure() -> bool {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Nanoseconds from `a` to `b`, worked out in `i128` without shortcut.
    fn exact(a: Parts, b: Parts) -> u64 {
        let total = (i128::from(b.secs) - i128::from(a.secs)) * NANOS_PER_SEC + i128::from(b.nanos)
            - i128::from(a.nanos);
        u64::try_from(total.max(0)).unwrap_or(u64::MAX)
    }

    fn parts() -> impl Strategy<Value = Parts> {
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
