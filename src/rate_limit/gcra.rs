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

use super::clock::{Origin, TokioInstant};

/// The allowance of one key (or of every call of an unkeyed tier).
pub(crate) struct Limiter {
    /// The origin of `tat`.
    start: Origin,
    /// The emission interval: the time one call uses up, in nanoseconds.
    t: u64,
    /// The burst tolerance: `t` times the burst less one.
    tau: u64,
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
        Self {
            start,
            t,
            tau: t.saturating_mul(burst - 1),
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
    }
}
