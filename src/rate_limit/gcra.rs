//! One key's allowance: the generic cell rate algorithm over a single
//! atomic word, on tokio's clock (so that limits follow paused time in
//! tests).
//!
//! The arithmetic is governor's (`Gcra::test_and_update` over its
//! in-memory state), written out for the one case the limiter needs, so
//! that a check reads the clock once, converts it once and makes one
//! compare-and-swap, and works out the allowance left only when asked.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::clock::{Origin, TokioInstant, near_of};

/// The allowance of one key (or of every call of an unkeyed tier).
pub(crate) struct Limiter {
    /// The origin of `tat`.
    start: Origin,
    /// The emission interval: the time one call uses up, in nanoseconds.
    t: u64,
    /// The burst tolerance: `t` times the burst less one.
    tau: u64,
    /// The most calls a service value leases at once ([`Lease`]): one
    /// sixteenth of the burst, at most what the quota emits in
    /// [`LEASE_HORIZON`], at least one (then every call is exact).
    cap: u64,
    /// The theoretical arrival time of the next call, in nanoseconds since
    /// `start`; zero before the first call (any time not after the first
    /// call's decides as that call's own time would: it passes, and sets
    /// `tat` to its time plus `t`).
    tat: AtomicU64,
    /// The key, as events name it, for a keyed limiter's key (formatted
    /// once, when the key is first stored); `(overflow)` for the limiter
    /// shared by keys that found no room.
    key: Option<Box<str>>,
}

/// What is left of one allowance, read without taking anything.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Level {
    /// Calls that could pass at once now.
    pub(crate) remaining: u32,
    /// Until the allowance is whole again.
    pub(crate) full_in: Duration,
}

/// What a call that passed left of the allowance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    t: u64,
    tau: u64,
    /// When the call was measured, since `start`.
    t0: u64,
    /// The theoretical arrival time after the call.
    tat: u64,
}

impl Snapshot {
    /// Calls that could still pass at once (governor's
    /// `StateSnapshot::remaining_burst_capacity`).
    pub(crate) fn remaining_burst_capacity(&self) -> u32 {
        let window = self.tau.saturating_add(self.t);
        let room = self.t0.saturating_add(window).saturating_sub(self.tat);
        u32::try_from(room.min(window) / self.t).unwrap_or(u32::MAX)
    }
}

/// A refused call: when a call would pass.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NotUntil {
    start: Instant,
    /// The earliest time a call passes, since `start`.
    earliest: u64,
}

impl NotUntil {
    /// The earliest time a call passes.
    fn earliest_possible(&self) -> Instant {
        let earliest = Duration::from_nanos(self.earliest);
        self.start.checked_add(earliest).unwrap_or(self.start)
    }

    /// The wait from `from` until a call passes (zero if that is past).
    pub(crate) fn wait_time_from(&self, from: TokioInstant) -> Duration {
        self.earliest_possible().saturating_duration_since(from.0)
    }
}

/// The longest a leased call can be spent after it was taken from the
/// allowance: 1 ms. A lease holds at most what the quota emits in it.
pub(crate) const LEASE_HORIZON: u64 = 1_000_000;

/// Calls one service value took from an allowance at once, to spend
/// without touching the shared state.
///
/// A lease is taken only from an allowance at rest (its theoretical
/// arrival time not after now): `n` calls at `t0` set the shared state to
/// `t0 + n·t`, as `n` calls at `t0` would, and the lease is spendable until
/// then ([`end`](Self::end)), so no leased call is spent after the time the
/// shared state accounted it for. Every other call (the allowance busy, a
/// far reading, a listening headers slot) is decided exactly, one
/// compare-and-swap each.
///
/// Since a lease needs an allowance at rest, and leaves it busy until its
/// end, the unexpired leases of one allowance never overlap in time: at
/// any moment at most one lease, of at most `cap` calls, is unspent, over
/// every service value. Hence (`cap` at most a sixteenth of the burst `b`,
/// and at most 1 ms of the quota):
///
/// - at most `cap - 1` calls pass beyond the exact GCRA: the calls that
///   pass conform to the GCRA with the same interval and a burst of
///   `b + cap - 1`;
/// - at most `cap - 1` calls are refused early: a call is refused only
///   where the exact GCRA over the calls that passed, with a burst of
///   `b - (cap - 1)`, would refuse it too.
///
/// A quota whose burst is below 32, or whose interval is above 0.5 ms, has
/// `cap = 1` and is exact.
///
/// Leases grow: a fresh value leases one call (its own), and each lease
/// taken at rest doubles the next, up to `cap`; a call that finds the
/// allowance busy sets it back to one. When a value is dropped, its unspent
/// calls whose time lies wholly after now go back ([`Limiter::give_back`]):
/// the shared state moves back by their intervals, which is exactly the
/// state without them (only the latest lease can have any such call, and
/// every call decided since it was busy, so none of their sums clamped).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease {
    /// Calls left to spend.
    left: u64,
    /// When the lease ends, in nanoseconds since the limiter's start: the
    /// shared state's time after the lease was taken.
    end: u64,
    /// The size of the next lease taken at rest.
    next: u64,
    /// The limiter's origin, as [`near_of`] reads it (zero, reading
    /// nothing, until a lease is taken).
    origin: (u64, u64),
}

impl Lease {
    /// No call leased; the next lease is of one call.
    pub(crate) const fn new() -> Self {
        Self {
            left: 0,
            end: 0,
            next: 1,
            origin: (0, 0),
        }
    }

    /// Whether calls are left to give back.
    #[inline]
    pub(crate) fn holds(&self) -> bool {
        self.left != 0
    }
}

impl Default for Lease {
    fn default() -> Self {
        Self::new()
    }
}

impl Limiter {
    /// A full allowance for `quota`, starting now.
    pub(crate) fn new(quota: governor::Quota) -> Self {
        let t = nanos(quota.replenish_interval()).max(1);
        let burst = u64::from(quota.burst_size().get());
        // A checked quota refills its burst within 2^63 ns, so that sums
        // of near times cannot overflow (see `check`); any other is always
        // measured the far way.
        let start = Origin::new(Instant::now());
        let start = match t.checked_mul(burst) {
            Some(window) if window <= 1 << 63 => start,
            _ => start.without_near(),
        };
        let cap = if start.measures_near() {
            (burst / 16).min(LEASE_HORIZON / t).max(1)
        } else {
            1
        };
        Self {
            start,
            t,
            tau: t.saturating_mul(burst - 1),
            cap,
            tat: AtomicU64::new(0),
            key: None,
        }
    }

    /// A full allowance for `quota` of the key events name `key`.
    pub(crate) fn keyed(quota: governor::Quota, key: Box<str>) -> Self {
        Self {
            key: Some(key),
            ..Self::new(quota)
        }
    }

    /// The key, as events name it, of a keyed limiter.
    #[inline]
    pub(crate) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What is left of the allowance now, without taking a call.
    pub(crate) fn level(&self) -> Level {
        let t0 = self.start.nanos_to(Instant::now());
        let tat = self.tat.load(Ordering::Acquire).max(t0);
        let snapshot = Snapshot {
            t: self.t,
            tau: self.tau,
            t0,
            tat,
        };
        Level {
            remaining: snapshot.remaining_burst_capacity(),
            full_in: Duration::from_nanos(tat.saturating_sub(t0)),
        }
    }

    /// Takes one call from the allowance, or says when one would pass.
    #[inline]
    pub(crate) fn check(&self) -> Result<Snapshot, NotUntil> {
        let now = Instant::now();
        match self.start.near(now) {
            // `t0` is below 2^63 and `t + tau` at most 2^63 (the origin
            // measures near readings only then): a sum `take` makes is
            // `t0 + t`, or `tat + t` with `tat` at most `t0 + tau`, so
            // neither reaches `u64::MAX` and neither needs saturating.
            Some(t0) => self.take(t0, |a, b| a + b),
            // 292 years or more after the start, or a clock read another
            // way: governor's saturating sums.
            None => self.take(self.start.nanos_to(now), u64::saturating_add),
        }
    }

    /// Takes one call at `t0` nanoseconds after the start, adding times
    /// with `add` (governor's saturating addition, or a plain one where no
    /// sum can overflow).
    #[inline(always)]
    fn take(&self, t0: u64, add: impl Fn(u64, u64) -> u64) -> Result<Snapshot, NotUntil> {
        let (t, tau) = (self.t, self.tau);
        let mut prev = self.tat.load(Ordering::Acquire);
        loop {
            // Governor's `max(tat, t0) + t` once `t0` is at least
            // `tat - tau`; a `tat` not after `t0` (an allowance at rest)
            // passes whatever `tau`.
            let next = if prev <= t0 {
                add(t0, t)
            } else {
                let earliest = prev.saturating_sub(tau);
                if t0 < earliest {
                    return Err(NotUntil {
                        start: self.start.instant(),
                        earliest,
                    });
                }
                add(prev, t)
            };
            match self
                .tat
                .compare_exchange_weak(prev, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Ok(Snapshot {
                        t,
                        tau,
                        t0,
                        tat: next,
                    });
                }
                Err(actual) => prev = actual,
            }
        }
    }
}

impl Limiter {
    /// Takes one call, from `lease` while it lasts, otherwise from the
    /// shared allowance (renewing `lease` when that is at rest), or says
    /// when one would pass.
    #[inline(always)]
    pub(crate) fn check_leased(&self, lease: &mut Lease) -> Result<(), NotUntil> {
        let now = Instant::now();
        // A lease reads only the service value's own fields.
        if lease.left != 0 {
            if let Some(t0) = near_of(lease.origin, now) {
                if t0 < lease.end {
                    lease.left -= 1;
                    return Ok(());
                }
            }
        }
        match self.start.near(now) {
            Some(t0) => self.renew(t0, lease),
            None => self
                .take(self.start.nanos_to(now), u64::saturating_add)
                .map(|_| ()),
        }
    }

    /// Takes a lease at `t0` (near: see `check`), of `lease.next` calls
    /// when the allowance is at rest, of one call otherwise, and spends
    /// one of them.
    #[inline]
    fn renew(&self, t0: u64, lease: &mut Lease) -> Result<(), NotUntil> {
        let (t, tau) = (self.t, self.tau);
        // At most `cap` (not above the burst): `n` calls at rest pass.
        let n = lease.next.min(self.cap);
        let mut prev = self.tat.load(Ordering::Acquire);
        loop {
            let (next, at_rest) = if prev <= t0 {
                // `n·t` is at most 1 ms: no overflow (`t0` below 2^63).
                (t0 + n * t, true)
            } else {
                let earliest = prev.saturating_sub(tau);
                if t0 < earliest {
                    lease.next = 1;
                    return Err(NotUntil {
                        start: self.start.instant(),
                        earliest,
                    });
                }
                (prev + t, false)
            };
            match self
                .tat
                .compare_exchange_weak(prev, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    *lease = if at_rest {
                        Lease {
                            left: n - 1,
                            end: next,
                            next: (n * 2).min(self.cap),
                            origin: self.start.near_parts(),
                        }
                    } else {
                        Lease::new()
                    };
                    return Ok(());
                }
                Err(actual) => prev = actual,
            }
        }
    }

    /// Gives back the calls of `lease` left unspent whose time lies wholly
    /// after now (see [`Lease`]); the rest are spent as far as the shared
    /// state is concerned, and no longer hold anything back once their time
    /// has passed.
    #[cold]
    #[inline(never)]
    pub(crate) fn give_back(&self, lease: &Lease) {
        let mut prev = self.tat.load(Ordering::Acquire);
        loop {
            let Some(now) = self.start.near(Instant::now()) else {
                return;
            };
            // The unspent calls are the last `left` intervals before `end`.
            let back = (lease.end.saturating_sub(now) / self.t).min(lease.left);
            // The lease is the latest taken at rest while its end is ahead
            // (see `Lease`): the state is at or after its end.
            if back == 0 || prev < lease.end {
                return;
            }
            let next = prev - back * self.t;
            match self
                .tat
                .compare_exchange_weak(prev, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                // Read the clock again: a lease taken since, at rest, was
                // taken at or after this lease's end, so no call goes back.
                Err(actual) => prev = actual,
            }
        }
    }

    /// The most calls a lease of this allowance holds.
    #[cfg(test)]
    pub(crate) fn lease_cap(&self) -> u64 {
        self.cap
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("interval", &Duration::from_nanos(self.t))
            .field("tolerance", &Duration::from_nanos(self.tau))
            .finish_non_exhaustive()
    }
}

/// `d` in nanoseconds, saturating (quotas are checked to fit).
#[inline]
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use governor::RateLimiter;
    use governor::clock::Clock;
    use governor::middleware::StateInformationMiddleware;
    use proptest::prelude::*;

    use super::super::clock::TokioClock;
    use super::*;

    /// Runs `f` on a paused current-thread runtime.
    fn paused(f: impl std::future::Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(f);
    }

    /// A value that keeps calling doubles its lease; dropped, it gives
    /// back every unspent call whose time is still ahead, and the shared
    /// state is then the exact GCRA's over the calls that passed.
    #[test]
    fn leases_grow_and_go_back_whole() {
        paused(async {
            let interval = Duration::from_micros(1);
            let quota = governor::Quota::with_period(interval)
                .expect("non-zero period")
                .allow_burst(NonZeroU32::new(1_024).expect("non-zero"));
            let limiter = Limiter::new(quota);
            assert_eq!(limiter.lease_cap(), 64);
            let mut lease = Lease::new();
            // At rest each time: leases of 1, 2 and 4 calls.
            let mut calls = 0;
            for size in [1, 2, 4] {
                tokio::time::advance(interval * 8).await;
                limiter.check_leased(&mut lease).expect("passes");
                assert_eq!(lease.left, size - 1);
                calls += 1;
            }
            assert_eq!(limiter.level().remaining, 1_024 - 4);
            limiter.give_back(&lease);
            assert_eq!(limiter.level().remaining, 1_024 - 1);
            assert_eq!(calls, 3);

            // A quota of 10 a second with a burst of 10 leases one call:
            // every decision is the exact one.
            let exact = Limiter::new(governor::Quota::per_second(
                NonZeroU32::new(10).expect("non-zero"),
            ));
            assert_eq!(exact.lease_cap(), 1);
            let mut lease = Lease::new();
            for _ in 0..10 {
                exact.check_leased(&mut lease).expect("within the burst");
                assert!(!lease.holds());
            }
            assert!(exact.check_leased(&mut lease).is_err());
        });
    }

    proptest! {
        /// Every decision, allowance left and wait is governor's, for any
        /// quota and any sequence of calls and pauses.
        #[test]
        fn decides_as_governor_does(
            per_period in 1u32..1_000,
            period_ms in 1u64..10_000,
            burst in 1u32..50,
            steps in proptest::collection::vec((0u64..2_000, 1usize..4), 1..60),
        ) {
            paused(async move {
                let quota = governor::Quota::with_period(
                    Duration::from_millis(period_ms) / per_period,
                )
                .expect("non-zero period")
                .allow_burst(NonZeroU32::new(burst).expect("non-zero"));
                let ours = Limiter::new(quota);
                // The same limiter measuring every reading the far way.
                let far = Limiter::new(quota);
                let far = Limiter {
                    start: far.start.without_near(),
                    ..far
                };
                let theirs = RateLimiter::direct_with_clock(quota, TokioClock)
                    .with_middleware::<StateInformationMiddleware>();
                for (pause_ms, calls) in steps {
                    tokio::time::advance(Duration::from_millis(pause_ms)).await;
                    for _ in 0..calls {
                        let expected = theirs.check();
                        for ours in [&ours, &far] {
                            match (ours.check(), &expected) {
                                (Ok(a), Ok(b)) => assert_eq!(
                                    a.remaining_burst_capacity(),
                                    b.remaining_burst_capacity()
                                ),
                                (Err(a), Err(b)) => {
                                    let now = TokioClock.now();
                                    assert_eq!(a.wait_time_from(now), b.wait_time_from(now));
                                }
                                (a, b) => panic!("ours {a:?}, governor's {:?}", b.is_ok()),
                            }
                        }
                    }
                }
            });
        }

        /// Leases keep the bounds [`Lease`] states, over any calls, clones,
        /// drops and pauses of any number of service values: every call
        /// that passes passes an exact GCRA with a burst `cap - 1` larger,
        /// and every call refused is refused by an exact GCRA with a burst
        /// `cap - 1` smaller, both over the calls that passed. A quota with
        /// `cap = 1` decides exactly.
        #[test]
        fn leases_stay_within_their_bound(
            interval_ns in prop_oneof![1u64..100, 100u64..100_000, 100_000u64..2_000_000],
            burst in prop_oneof![1u32..40, 32u32..400, 32u32..3_000],
            // Pauses in sixteenths of the interval, runs of calls in
            // sixteenths of the burst: the calls come slowly enough for
            // leases to grow, and fast enough to meet the bounds.
            steps in proptest::collection::vec((0u8..8, 0usize..4, 0u64..40), 1..200),
        ) {
            paused(async move {
                let quota = governor::Quota::with_period(Duration::from_nanos(interval_ns))
                    .expect("non-zero period")
                    .allow_burst(NonZeroU32::new(burst).expect("non-zero"));
                let limiter = Limiter::new(quota);
                let cap = limiter.lease_cap();
                let (t, b) = (i128::from(limiter.t), i128::from(burst));
                assert!(cap >= 1 && cap <= u64::from(burst / 16).max(1));
                assert!(cap == 1 || u128::from(cap * limiter.t) <= u128::from(LEASE_HORIZON));
                let cap = i128::from(cap);
                let mut lenient = Exact::new(t, (b + cap - 2) * t);
                let mut strict = Exact::new(t, (b - cap) * t);
                let base = Instant::now();
                let now = || i128::try_from((Instant::now() - base).as_nanos()).expect("near");
                let mut values = vec![Lease::new()];
                for (op, which, amount) in steps {
                    let calls = match op {
                        0 | 1 => 1,
                        2 => amount * u64::from(burst) / 16,
                        _ => 0,
                    };
                    for _ in 0..calls {
                        if values.is_empty() {
                            break;
                        }
                        let n = which % values.len();
                        let at = now();
                        match limiter.check_leased(&mut values[n]) {
                            Ok(()) => {
                                assert!(lenient.passes(at), "passed beyond the bound");
                                lenient.take(at);
                                strict.take(at);
                            }
                            Err(_) => assert!(!strict.passes(at), "refused within the bound"),
                        }
                    }
                    match op {
                        3 => values.push(Lease::new()),
                        4 if !values.is_empty() => {
                            let lease = values.swap_remove(which % values.len());
                            if lease.holds() {
                                limiter.give_back(&lease);
                            }
                        }
                        5 | 6 => {
                            let pause = Duration::from_nanos(interval_ns * amount / 16);
                            tokio::time::advance(pause).await;
                        }
                        7 => {
                            let pause = Duration::from_nanos(interval_ns * amount * 4);
                            tokio::time::advance(pause).await;
                        }
                        _ => {}
                    }
                }
            });
        }
    }

    /// An exact GCRA over every call it is given (`tat` only grows), to
    /// judge the limiter's decisions against.
    struct Exact {
        t: i128,
        tau: i128,
        tat: i128,
    }

    impl Exact {
        fn new(t: i128, tau: i128) -> Self {
            Self {
                t,
                tau,
                tat: i128::MIN / 2,
            }
        }

        /// Whether a call at `at` passes.
        fn passes(&self, at: i128) -> bool {
            at >= self.tat - self.tau
        }

        /// Counts a call at `at`, passed or not.
        fn take(&mut self, at: i128) {
            self.tat = self.tat.max(at) + self.t;
        }
    }
}
