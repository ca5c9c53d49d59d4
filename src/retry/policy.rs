//! The decision after each attempt: return, give up, or retry after a delay.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::backoff::{Backoff, BackoffKey, BackoffState};
use crate::budget::{RetryBudget, Withdrawal};
use crate::classify::Verdict;
use crate::deadline::Deadline;
use crate::error::{BoxError, RetryAfterTooLong};
use crate::event::{Event, RetryStopReason};
use crate::intern::{CAP, Interner, Shared};
use crate::random::{RandomSource, default_random, unit_interval};

/// What a retry layer keeps, shared by every service it makes: the
/// classifier and the replay, cloned into each call's future, and the
/// settings, which a future reaches without counting a reference when
/// they are interned.
pub(crate) struct Policy<C, P> {
    pub(crate) classifier: C,
    pub(crate) replay: P,
    /// The settings' own, read by every call: at hand without going
    /// through `settings`.
    pub(crate) max_attempts: u32,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) settings: Shared<Settings>,
}

/// The settings of a retry layer that don't depend on its classifier or
/// replay: all a call needs after a retryable failure.
pub(crate) struct Settings {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) max_retry_after: Duration,
    pub(crate) honor_retry_after: bool,
    /// `None`: the process-wide default generator.
    pub(crate) random: Option<Arc<dyn RandomSource>>,
    pub(crate) name: Cow<'static, str>,
    /// The series of its retries and stops (shared by the layers with the
    /// same settings: a series is its metric and labels).
    pub(crate) decisions: crate::event::Decisions,
}

/// What tells two interned settings apart: everything but the budget and
/// the generator, which are never interned.
#[derive(PartialEq, Eq, Hash)]
pub(super) struct Key {
    max_attempts: u32,
    backoff: BackoffKey,
    max_retry_after: Duration,
    honor_retry_after: bool,
    name: Cow<'static, str>,
}

/// The settings of every retry layer without a budget or a generator of
/// its own, one per distinct content.
static INTERNED: Interner<Key, Settings> = Interner::new(CAP);

impl Settings {
    /// These settings, shared by the layer's services and futures: kept
    /// for good (see [`Interner`]) when they hold no state of their own;
    /// behind an `Arc` with a budget or a generator (state shared by
    /// identity, not content), or once the table is full.
    pub(crate) fn share(self) -> Shared<Settings> {
        if self.budget.is_some() || self.random.is_some() {
            return Shared::owned(self);
        }
        Self::share_in(&INTERNED, self)
    }

    /// [`share`](Self::share) in `table`, whatever the settings hold.
    pub(super) fn share_in(
        table: &Interner<Key, Settings>,
        settings: Settings,
    ) -> Shared<Settings> {
        let key = Key {
            max_attempts: settings.max_attempts,
            backoff: settings.backoff.key(),
            max_retry_after: settings.max_retry_after,
            honor_retry_after: settings.honor_retry_after,
            name: settings.name.clone(),
        };
        table.get_or_make(key, || settings)
    }
}

/// What to do after an attempt.
pub(crate) enum Step {
    /// Return the attempt's outcome as it is.
    Return,
    /// End the call with this error instead.
    GiveUp(BoxError),
    /// Send the request again after this delay, with the retry taken from
    /// the budget (if there is one).
    Retry(Duration, Option<Withdrawal>),
}

/// Why a retryable failure was not retried, as events name it.
#[derive(Clone, Copy)]
enum Stop {
    AttemptsExhausted,
    NotReplayable,
    Deadline,
    BudgetSpent,
}

impl Stop {
    const fn reason(self) -> RetryStopReason {
        match self {
            Stop::AttemptsExhausted => RetryStopReason::AttemptsExhausted,
            Stop::NotReplayable => RetryStopReason::NotReplayable,
            Stop::Deadline => RetryStopReason::Deadline,
            Stop::BudgetSpent => RetryStopReason::BudgetSpent,
        }
    }
}

impl Settings {
    /// Decides what follows attempt number `attempt` (1-based), judged
    /// `verdict`. `can_replay` tells whether a copy of the request is at hand.
    pub(crate) fn next_step(
        &self,
        verdict: Verdict,
        attempt: u32,
        state: &mut BackoffState,
        can_replay: bool,
    ) -> Step {
        // One attempt in all is no retry at all: nothing to report.
        if !verdict.is_retryable() || self.max_attempts == 1 {
            return Step::Return;
        }
        if attempt >= self.max_attempts {
            return self.stop(Stop::AttemptsExhausted, attempt, verdict);
        }
        if !can_replay {
            return self.stop(Stop::NotReplayable, attempt, verdict);
        }
        let bits = match &self.random {
            Some(random) => random.next_u64(),
            None => default_random().next_u64(),
        };
        let random = unit_interval(bits);
        let mut delay = self.backoff.delay(attempt, state, random);
        let hint = verdict.retry_after().filter(|_| self.honor_retry_after);
        if let Some(hint) = hint {
            if hint > self.max_retry_after {
                return self.too_long(hint, self.max_retry_after, attempt);
            }
            delay = delay.max(hint);
        }
        if let Some(deadline) = Deadline::current() {
            let left = deadline.remaining();
            if delay >= left {
                return match hint {
                    Some(hint) if hint >= left => self.too_long(hint, left, attempt),
                    _ => self.stop(Stop::Deadline, attempt, verdict),
                };
            }
        }
        let withdrawal = match &self.budget {
            Some(budget) => match budget.withdraw() {
                Some(withdrawal) => Some(withdrawal),
                None => return self.stop(Stop::BudgetSpent, attempt, verdict),
            },
            None => None,
        };
        crate::event::emit_counted(
            &self.decisions,
            &crate::event::Listeners::none(),
            &Event::RetryScheduled {
                name: &self.name,
                attempt,
                verdict,
                delay,
            },
        );
        Step::Retry(delay, withdrawal)
    }

    #[cold]
    fn stop(&self, why: Stop, attempt: u32, verdict: Verdict) -> Step {
        crate::event::emit_counted(
            &self.decisions,
            &crate::event::Listeners::none(),
            &Event::RetryStopped {
                name: &self.name,
                attempt,
                verdict,
                reason: why.reason(),
            },
        );
        Step::Return
    }

    #[cold]
    fn too_long(&self, requested: Duration, allowed: Duration, attempt: u32) -> Step {
        crate::event::emit_counted(
            &self.decisions,
            &crate::event::Listeners::none(),
            &Event::RetryStopped {
                name: &self.name,
                attempt,
                verdict: Verdict::Transient {
                    retry_after: Some(requested),
                },
                reason: RetryStopReason::RetryAfterTooLong,
            },
        );
        Step::GiveUp(Box::new(RetryAfterTooLong::new(requested, allowed)))
    }
}

impl<C, P> fmt::Debug for Policy<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &*self.settings;
        f.debug_struct("Policy")
            .field("name", &s.name)
            .field("max_attempts", &s.max_attempts)
            .field("backoff", &s.backoff)
            .field("budget", &s.budget)
            .field("max_retry_after", &s.max_retry_after)
            .field("honor_retry_after", &s.honor_retry_after)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("budget", &self.budget)
            .field("max_retry_after", &self.max_retry_after)
            .field("honor_retry_after", &self.honor_retry_after)
            .finish_non_exhaustive()
    }
}
