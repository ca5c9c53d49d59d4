//! The breaker's state machine, decided with atomics.
//!
//! The whole state is one `AtomicU64`: the kind (3 bits), a generation
//! (16 bits) bumped by every transition, and a deadline in milliseconds since
//! the breaker was made (45 bits): the end of the open period, or the end of
//! the longest wait in half-open. A transition is one compare-exchange from
//! the word its thread saw, so exactly one thread performs it, and a call
//! admitted under one generation never counts in a later one.
//!
//! Half-open probes are a second `AtomicU64`: the generation they belong to,
//! then probes in flight, probes done, failed and slow probes (12 bits each).

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::config::{Settings, WindowKind};
use super::window::{CountWindow, Counts, TimeWindow, Window};
use crate::clock::Origin;
use crate::error::CircuitOpen;
pub use crate::event::State;
use crate::event::TransitionReason;

pub(crate) use super::window::CachePadded;

/// How a [`State`] is packed into the breaker's word.
trait Packed {
    fn code(self) -> u64;
    fn of(word: u64) -> Self;
}

impl Packed for State {
    #[inline]
    fn code(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::Disabled => 4,
            State::MetricsOnly => 5,
        }
    }

    #[inline]
    fn of(word: u64) -> Self {
        match word & KIND_MASK {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            4 => State::Disabled,
            _ => State::MetricsOnly,
        }
    }
}

const KIND_MASK: u64 = 0b111;
const GEN_SHIFT: u32 = 3;
const DEADLINE_SHIFT: u32 = 19;
/// No deadline (half-open without a maximum wait).
const NO_DEADLINE: u64 = (1 << 45) - 1;

#[inline]
fn pack(state: State, generation: u16, deadline_ms: u64) -> u64 {
    state.code() | ((generation as u64) << GEN_SHIFT) | (deadline_ms << DEADLINE_SHIFT)
}

#[inline]
const fn generation(word: u64) -> u16 {
    (word >> GEN_SHIFT) as u16
}

#[inline]
const fn deadline(word: u64) -> u64 {
    word >> DEADLINE_SHIFT
}

const PROBE_BITS: u32 = 12;
const PROBE_MASK: u64 = (1 << PROBE_BITS) - 1;
const TAKEN: u32 = 0;
const DONE: u32 = PROBE_BITS;
const PROBE_FAILED: u32 = 2 * PROBE_BITS;
const PROBE_SLOW: u32 = 3 * PROBE_BITS;
const PROBE_GEN: u32 = 48;

const fn probe_field(word: u64, shift: u32) -> u64 {
    (word >> shift) & PROBE_MASK
}

/// What a call admitted by the breaker must report when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ticket {
    /// Nothing (the breaker is disabled).
    Untracked,
    /// Its outcome, in the window of this generation.
    Counted(u16),
    /// Its outcome as a probe of this half-open generation, or the release
    /// of its probe slot.
    Probe(u16),
}

/// An instant as nanoseconds since a breaker was made, plus one, so that
/// an `Option<Stamp>` takes one word in a call's future.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(NonZeroU64);

impl Stamp {
    /// The time from `self` to `later`, zero if `later` is earlier.
    #[inline]
    pub(crate) fn until(self, later: Stamp) -> Duration {
        Duration::from_nanos(later.0.get().saturating_sub(self.0.get()))
    }
}

/// The judged outcome of one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    /// `window::RECORDED`, plus `FAILED` and `SLOW` as they apply.
    pub(crate) code: u8,
    /// A failure's retry-after hint.
    pub(crate) hint: Option<Duration>,
}

enum Probe {
    Taken,
    Full,
    Stale,
}

/// One circuit breaker: its settings, state word, probe word and window.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: CachePadded<AtomicU64>,
    probes: CachePadded<AtomicU64>,
    /// Failed calls in a row, for the consecutive-failure trip.
    streak: CachePadded<AtomicU64>,
    /// Whether `streak` is kept: for the consecutive-failure trip or for
    /// retry-after hints.
    tracks_streak: bool,
    openings: AtomicU32,
    window: Window,
    pub(crate) settings: Settings,
    /// When the breaker was made: what its deadlines and the window's
    /// epochs are measured from.
    origin: Origin,
    key: Option<Box<str>>,
    #[cfg(feature = "metrics")]
    gauges: Option<crate::event::metrics::BreakerGauges>,
    /// The series of its refusals and transitions.
    decisions: crate::event::Decisions,
}

impl Breaker {
    pub(crate) fn new(settings: Settings, key: Option<Box<str>>) -> Self {
        let window = match settings.window {
            WindowKind::Count(size) => Window::Count(CountWindow::new(size)),
            WindowKind::Time { span, buckets } => {
                Window::Time(TimeWindow::new(span, buckets, settings.minimum_calls))
            }
        };
        Self {
            decisions: crate::event::Decisions::new(),
            #[cfg(feature = "metrics")]
            gauges: Some(crate::event::metrics::BreakerGauges::register(
                &settings.name,
                key.as_deref(),
            )),
            state: CachePadded(AtomicU64::new(pack(State::Closed, 0, 0))),
            probes: CachePadded(AtomicU64::new(0)),
            streak: CachePadded(AtomicU64::new(0)),
            tracks_streak: settings.consecutive_failures.is_some()
                || settings.retry_after_cap.is_some(),
            openings: AtomicU32::new(0),
            window,
            settings,
            origin: Origin::new(Instant::now()),
            key,
        }
    }

    /// Admits a call, or refuses it with the time the breaker stays open.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Ticket, CircuitOpen> {
        let word = self.state.0.load(Ordering::Acquire);
        if word & KIND_MASK == State::Closed.code() {
            return Ok(Ticket::Counted(generation(word)));
        }
        self.admit_other(word)
    }

    /// Admits or refuses a call of a breaker that was not closed when its
    /// state read `word`.
    fn admit_other(&self, mut word: u64) -> Result<Ticket, CircuitOpen> {
        loop {
            let generation = generation(word);
            match State::of(word) {
                State::Closed | State::MetricsOnly => return Ok(Ticket::Counted(generation)),
                State::Disabled => return Ok(Ticket::Untracked),
                State::ForcedOpen => return Err(CircuitOpen::new(Duration::ZERO)),
                State::Open => {
                    let now = Instant::now();
                    let until = Duration::from_millis(deadline(word));
                    let elapsed = self.elapsed(now);
                    if elapsed < until {
                        return Err(CircuitOpen::new(until - elapsed));
                    }
                    let wait = self
                        .settings
                        .max_half_open_wait
                        .map_or(NO_DEADLINE, |wait| self.deadline_ms(now, wait));
                    let next = pack(State::HalfOpen, generation.wrapping_add(1), wait);
                    if self.swap_state(word, next) {
                        self.emit_transition(
                            State::Open,
                            State::HalfOpen,
                            TransitionReason::OpenElapsed,
                            None,
                        );
                    }
                }
                State::HalfOpen => {
                    let now = (deadline(word) != NO_DEADLINE).then(Instant::now);
                    if let Some(now) = now
                        .filter(|now| self.elapsed(*now) >= Duration::from_millis(deadline(word)))
                    {
                        self.try_open(word, now, TransitionReason::HalfOpenTimeout, None);
                    } else {
                        match self.take_probe(generation) {
                            Probe::Taken => return Ok(Ticket::Probe(generation)),
                            Probe::Full => return Err(CircuitOpen::new(Duration::ZERO)),
                            Probe::Stale => {}
                        }
                    }
                }
            }
            word = self.state.0.load(Ordering::Acquire);
        }
    }

    /// Reports how an admitted call ended; `None` when it was refused by an
    /// inner policy (not counted). `now` is the completion time if the
    /// caller already read the clock.
    /// `slot` is the batching lane of the call's thread,
    /// [`LANES`](super::window::LANES) if it has none.
    #[inline]
    pub(crate) fn complete(
        &self,
        ticket: Ticket,
        outcome: Option<Outcome>,
        now: Option<Instant>,
        slot: usize,
    ) {
        // The common case, kept short: a plain success of a closed breaker.
        if let (Ticket::Counted(generation), Some(outcome)) = (ticket, outcome) {
            if outcome.code == super::window::RECORDED {
                let word = self.state.0.load(Ordering::Acquire);
                let state = State::of(word);
                if self::generation(word) == generation
                    && (state == State::Closed || state == State::MetricsOnly)
                {
                    self.record_success(word, now, slot);
                }
                return;
            }
        }
        self.complete_other(ticket, outcome, now, slot);
    }

    /// Reports an answer (a success or a functional error) of a call
    /// counted in the window of `generation`, with no slow-call threshold
    /// to time it against; `slot` is the batching lane of the call's
    /// thread, [`LANES`](super::window::LANES) if it has none. The same as [`complete`](Self::complete) with
    /// a plain success, without building the outcome.
    #[inline]
    pub(crate) fn complete_success(&self, generation: u16, slot: usize) {
        let word = self.state.0.load(Ordering::Acquire);
        // The kind and generation bits, as a closed breaker of that
        // generation has them, or a metrics-only one.
        let seen = word & ((1 << DEADLINE_SHIFT) - 1);
        let closed = u64::from(generation) << GEN_SHIFT;
        if seen == closed || seen == closed | State::MetricsOnly.code() {
            self.record_success(word, None, slot);
        }
    }

    /// Every other end of a call: failures, slow calls, probes, refusals.
    fn complete_other(
        &self,
        ticket: Ticket,
        outcome: Option<Outcome>,
        now: Option<Instant>,
        slot: usize,
    ) {
        match (ticket, outcome) {
            (Ticket::Untracked, _) => {}
            (Ticket::Probe(generation), None) => self.release_probe(generation),
            (Ticket::Probe(generation), Some(outcome)) => {
                self.complete_probe(generation, outcome, now);
            }
            (Ticket::Counted(_), None) => {}
            (Ticket::Counted(generation), Some(outcome)) => {
                let word = self.state.0.load(Ordering::Acquire);
                if self::generation(word) != generation {
                    return;
                }
                let state = State::of(word);
                if state != State::Closed && state != State::MetricsOnly {
                    return;
                }
                let mut clock = now;
                let counts = self
                    .window
                    .record_on(outcome.code, slot, now.is_some(), || {
                        self.nanos(*clock.get_or_insert_with(Instant::now))
                    });
                // Failed calls in a row, counted when a trip reads them.
                let run = self.tracks_streak.then(|| {
                    use super::window::FAILED;
                    if outcome.code & FAILED != 0 {
                        self.streak.0.fetch_add(1, Ordering::AcqRel) + 1
                    } else {
                        if self.streak.0.load(Ordering::Acquire) != 0 {
                            self.streak.0.store(0, Ordering::Release);
                        }
                        0
                    }
                });
                let streak = self
                    .settings
                    .consecutive_failures
                    .map(|limit| run.is_some_and(|run| run >= limit));
                if state == State::Closed {
                    let reason = counts
                        .filter(|counts| counts.calls >= self.settings.minimum_calls)
                        .and_then(|counts| {
                            self.settings
                                .trips(counts.calls, counts.failures, counts.slow)
                        })
                        .or_else(|| {
                            (streak == Some(true)).then_some(TransitionReason::ConsecutiveFailures)
                        });
                    if let Some(reason) = reason {
                        let now = clock.unwrap_or_else(Instant::now);
                        self.try_open(word, now, reason, outcome.hint);
                    } else if let Some(hint) = self
                        .settings
                        .honoured(outcome.hint)
                        .filter(|_| run.is_some_and(|run| run >= self.settings.retry_after_run))
                    {
                        let now = clock.unwrap_or_else(Instant::now);
                        self.open_for(word, now, TransitionReason::RetryAfter, hint);
                    }
                }
            }
        }
    }

    /// Records a plain success (neither failed nor slow) in the window of
    /// `word`'s generation, closed or metrics-only: it ends a run of
    /// failures, carries no hint, and can only open the breaker by bringing
    /// the window to its minimum calls.
    #[inline]
    fn record_success(&self, word: u64, now: Option<Instant>, slot: usize) {
        if self.tracks_streak && self.streak.0.load(Ordering::Acquire) != 0 {
            self.streak.0.store(0, Ordering::Release);
        }
        // Most successes wait in their lane's batch.
        if let Some(n) = self.window.pend_success(slot, now.is_some()) {
            self.enter_successes(word, now, n, slot);
        }
    }

    /// Enters `n` plain successes in the window of `word`'s generation, and
    /// opens the breaker if they bring it to its minimum calls with a rate
    /// at its threshold.
    #[inline(never)]
    fn enter_successes(&self, word: u64, now: Option<Instant>, n: u64, slot: usize) {
        let Some(counts) = self
            .window
            .enter_successes(n, slot, || self.nanos(now.unwrap_or_else(Instant::now)))
        else {
            return;
        };
        if State::of(word) != State::Closed || counts.calls < self.settings.minimum_calls {
            return;
        }
        if let Some(reason) = self
            .settings
            .trips(counts.calls, counts.failures, counts.slow)
        {
            self.try_open(word, now.unwrap_or_else(Instant::now), reason, None);
        }
    }

    /// Frees the probe slot of a probe that ended without an outcome.
    pub(crate) fn release_probe(&self, generation: u16) {
        let _ = self
            .probes
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let live = (word >> PROBE_GEN) as u16 == generation && probe_field(word, TAKEN) > 0;
                live.then(|| word - (1 << TAKEN))
            });
    }

    fn take_probe(&self, generation: u16) -> Probe {
        loop {
            let word = self.probes.0.load(Ordering::Acquire);
            let seen = (word >> PROBE_GEN) as u16;
            if seen != generation {
                if (seen.wrapping_sub(generation) as i16) > 0 {
                    return Probe::Stale;
                }
                let fresh = u64::from(generation) << PROBE_GEN;
                let _ = self.probes.0.compare_exchange(
                    word,
                    fresh,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                continue;
            }
            if probe_field(word, TAKEN) + probe_field(word, DONE) >= u64::from(self.settings.probes)
            {
                return Probe::Full;
            }
            if self
                .probes
                .0
                .compare_exchange(
                    word,
                    word + (1 << TAKEN),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                return Probe::Taken;
            }
        }
    }

    fn complete_probe(&self, generation: u16, outcome: Outcome, now: Option<Instant>) {
        use super::window::{FAILED, SLOW};
        let mut add = 1u64 << DONE;
        if outcome.code & FAILED != 0 {
            add += 1 << PROBE_FAILED;
        }
        if outcome.code & SLOW != 0 {
            add += 1 << PROBE_SLOW;
        }
        let Ok(before) = self
            .probes
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let live = (word >> PROBE_GEN) as u16 == generation && probe_field(word, TAKEN) > 0;
                live.then(|| word - (1 << TAKEN) + add)
            })
        else {
            return;
        };
        let after = before - (1 << TAKEN) + add;
        let done = probe_field(after, DONE);
        let hinted = outcome.code & FAILED != 0 && self.settings.honoured(outcome.hint).is_some();
        if done < u64::from(self.settings.probes) && !hinted {
            return;
        }
        let word = self.state.0.load(Ordering::Acquire);
        if State::of(word) != State::HalfOpen || self::generation(word) != generation {
            return;
        }
        if hinted && done < u64::from(self.settings.probes) {
            // The callee asked for a wait: no more probes until it is over.
            let now = now.unwrap_or_else(Instant::now);
            self.try_open(word, now, TransitionReason::ProbeRetryAfter, outcome.hint);
            return;
        }
        let failed = probe_field(after, PROBE_FAILED);
        let slow = probe_field(after, PROBE_SLOW);
        match self.settings.trips(done, failed, slow) {
            Some(reason) => {
                let reason = if reason == TransitionReason::FailureRate {
                    TransitionReason::ProbeFailureRate
                } else {
                    TransitionReason::ProbeSlowCallRate
                };
                let now = now.unwrap_or_else(Instant::now);
                self.try_open(word, now, reason, outcome.hint);
            }
            None => {
                let next = pack(State::Closed, generation.wrapping_add(1), 0);
                if self.swap_state(word, next) {
                    self.window.clear();
                    self.streak.0.store(0, Ordering::Release);
                    self.openings.store(0, Ordering::Relaxed);
                    self.emit_transition(
                        State::HalfOpen,
                        State::Closed,
                        TransitionReason::ProbesPassed,
                        None,
                    );
                }
            }
        }
    }

    /// Opens the breaker from `from`, unless another thread moved it first.
    fn try_open(&self, from: u64, now: Instant, reason: TransitionReason, hint: Option<Duration>) {
        let openings = self.openings.load(Ordering::Relaxed);
        let open_for = self.settings.open_with_hint(openings, hint);
        self.open_for(from, now, reason, open_for);
    }

    /// Opens the breaker from `from` for `open_for`, unless another thread
    /// moved it first.
    fn open_for(&self, from: u64, now: Instant, reason: TransitionReason, open_for: Duration) {
        let openings = self.openings.load(Ordering::Relaxed);
        let until = self.deadline_ms(now, open_for);
        let next = pack(State::Open, generation(from).wrapping_add(1), until);
        if self.swap_state(from, next) {
            self.openings
                .store(openings.saturating_add(1), Ordering::Relaxed);
            self.emit_transition(State::of(from), State::Open, reason, Some(open_for));
        }
    }

    /// Moves to `to` whatever the state, as asked through a handle.
    pub(crate) fn force(&self, to: State, reason: TransitionReason) {
        let word = self
            .state
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                Some(pack(to, generation(word).wrapping_add(1), 0))
            });
        // `fetch_update` with a closure that always answers cannot fail.
        let from = word.map_or(State::Closed, State::of);
        if to == State::Closed {
            self.window.clear();
            self.streak.0.store(0, Ordering::Release);
            self.openings.store(0, Ordering::Relaxed);
        }
        self.emit_transition(from, to, reason, None);
    }

    fn swap_state(&self, from: u64, to: u64) -> bool {
        self.state
            .0
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub(crate) fn state(&self) -> State {
        State::of(self.state.0.load(Ordering::Acquire))
    }

    /// The window's counts now, the state, and how long it stays open.
    pub(crate) fn snapshot(&self) -> (State, Counts, Option<Duration>) {
        let word = self.state.0.load(Ordering::Acquire);
        let now = Instant::now();
        let counts = self.window.counts(|| self.nanos(now));
        let state = State::of(word);
        let remaining = (state == State::Open)
            .then(|| Duration::from_millis(deadline(word)).saturating_sub(self.elapsed(now)));
        (state, counts, remaining)
    }

    /// Probe calls of the current half-open period still under way.
    pub(crate) fn probes_in_flight(&self) -> u32 {
        let word = self.state.0.load(Ordering::Acquire);
        let probes = self.probes.0.load(Ordering::Acquire);
        if State::of(word) == State::HalfOpen && (probes >> PROBE_GEN) as u16 == generation(word) {
            probe_field(probes, TAKEN) as u32
        } else {
            0
        }
    }

    #[inline]
    fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin.instant())
    }

    /// Nanoseconds from when the breaker was made to `now` (zero if `now`
    /// is earlier, `u64::MAX` if further than that).
    #[inline]
    fn nanos(&self, now: Instant) -> u64 {
        self.origin.nanos_to(now)
    }

    /// `at` as a [`Stamp`] of this breaker (instants before it was made
    /// are stamped as the moment it was).
    // Out of line: a call stamps only with a slow-call threshold or a
    // deadline in force, and the measuring inlined into the call's future
    // costs the plain call a few instructions.
    #[inline(never)]
    pub(crate) fn stamp(&self, at: Instant) -> Stamp {
        Stamp(NonZeroU64::MIN.saturating_add(self.nanos(at)))
    }

    /// `after` from `now`, in whole milliseconds since the breaker was made,
    /// rounded down: the time left never exceeds the duration asked for, and
    /// a deadline may come up to a millisecond early.
    fn deadline_ms(&self, now: Instant, after: Duration) -> u64 {
        self.elapsed(now)
            .checked_add(after)
            .map_or(NO_DEADLINE - 1, |at| {
                u64::try_from(at.as_millis())
                    .unwrap_or(u64::MAX)
                    .min(NO_DEADLINE - 1)
            })
    }

    /// Removes this breaker's state series (its key was evicted): every
    /// state gauge reads 0 from now on.
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    pub(crate) fn forget_gauges(&self) {
        #[cfg(feature = "metrics")]
        if let Some(gauges) = &self.gauges {
            gauges.remove();
        }
    }

    /// The one place state transitions are reported.
    fn emit_transition(
        &self,
        from: State,
        to: State,
        reason: TransitionReason,
        open_for: Option<Duration>,
    ) {
        #[cfg(feature = "metrics")]
        if let Some(gauges) = &self.gauges {
            gauges.update(|| self.state());
        }
        crate::event::emit_counted(
            &self.decisions,
            &self.settings.listeners,
            &crate::event::Event::StateChanged {
                name: &self.settings.name,
                key: self.key.as_deref(),
                from,
                to,
                reason,
                open_for,
            },
        );
    }

    /// Reports a refused call.
    #[cold]
    pub(crate) fn emit_rejection(&self, open: &CircuitOpen) {
        crate::event::emit_counted(
            &self.decisions,
            &self.settings.listeners,
            &crate::event::Event::Rejected {
                rejection: crate::event::Rejection::CircuitOpen,
                name: &self.settings.name,
                key: self.key.as_deref(),
                retry_after: Some(open.remaining()).filter(|d| !d.is_zero()),
            },
        );
    }

    /// The breaker's key, for a keyed breaker.
    pub(crate) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}
