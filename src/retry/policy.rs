//! The decision after each attempt: return, give up, or retry after a delay.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::backoff::{Backoff, BackoffState, RandomSource, default_random, unit_interval};
use super::budget::{RetryBudget, Withdrawal};
use crate::classify::Verdict;
use crate::error::{BoxError, RetryAfterTooLong};
use crate::observe::Event;
use crate::timeout::Deadline;

/// The settings of a retry layer. Every service the layer makes shares
/// one; each call's future holds its own copy, which takes no reference
/// count unless the layer has a budget or its own random source: the
/// plain settings are interned, and the classifier and replay are cloned
/// (usually zero-sized).
pub(crate) struct Policy<C, P> {
    pub(crate) settings: Settings,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) classifier: C,
    pub(crate) replay: P,
    /// `None`: the process-wide default generator.
    pub(crate) random: Option<Arc<dyn RandomSource>>,
}

impl<C: Clone, P: Clone> Clone for Policy<C, P> {
    #[inline]
    fn clone(&self) -> Self {
        Self {
            settings: self.settings.clone(),
            budget: self.budget.clone(),
            classifier: self.classifier.clone(),
            replay: self.replay.clone(),
            random: self.random.clone(),
        }
    }
}

/// The settings of a retry layer that are plain data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Plain {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) max_retry_after: Duration,
    pub(crate) honor_retry_after: bool,
    pub(crate) name: &'static str,
}

/// A layer's [`Plain`] settings: interned for the life of the process, so
/// that a copy is a pointer, or (once [`MAX_INTERNED`] distinct settings
/// are interned) shared through a reference count.
#[derive(Debug, Clone)]
pub(crate) enum Settings {
    Interned(&'static Plain),
    Counted(Arc<Plain>),
}

/// The most distinct settings interned: a bound on the memory they hold
/// (about 100 bytes each) however many layers a process builds.
const MAX_INTERNED: usize = 1_024;

/// Settings interned so far, one of each; only `build` takes the lock.
static INTERNED: Mutex<Vec<&'static Plain>> = Mutex::new(Vec::new());

impl Settings {
    pub(crate) fn new(plain: Plain) -> Self {
        let mut interned = INTERNED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&known) = interned.iter().find(|known| ***known == plain) {
            return Self::Interned(known);
        }
        if interned.len() < MAX_INTERNED {
            let leaked: &'static Plain = Box::leak(Box::new(plain));
            interned.push(leaked);
            return Self::Interned(leaked);
        }
        Self::Counted(Arc::new(plain))
    }
}

impl Deref for Settings {
    type Target = Plain;

    #[inline]
    fn deref(&self) -> &Plain {
        match self {
            Self::Interned(plain) => plain,
            Self::Counted(plain) => plain,
        }
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
    const fn as_str(self) -> &'static str {
        match self {
            Stop::AttemptsExhausted => "attempts_exhausted",
            Stop::NotReplayable => "not_replayable",
            Stop::Deadline => "deadline",
            Stop::BudgetSpent => "budget_spent",
        }
    }
}

impl<C, P> Policy<C, P> {
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
        if !verdict.is_retryable() || self.settings.max_attempts == 1 {
            return Step::Return;
        }
        if attempt >= self.settings.max_attempts {
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
        let mut delay = self.settings.backoff.delay(attempt, state, random);
        let hint = verdict
            .retry_after()
            .filter(|_| self.settings.honor_retry_after);
        if let Some(hint) = hint {
            if hint > self.settings.max_retry_after {
                return self.too_long(hint, self.settings.max_retry_after, attempt);
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
        crate::observe::emit(&Event::RetryScheduled {
            name: self.settings.name,
            attempt,
            verdict,
            delay,
        });
        Step::Retry(delay, withdrawal)
    }

    #[cold]
    fn stop(&self, why: Stop, attempt: u32, verdict: Verdict) -> Step {
        crate::observe::emit(&Event::RetryStopped {
            name: self.settings.name,
            attempt,
            verdict,
            reason: why.as_str(),
        });
        Step::Return
    }

    #[cold]
    fn too_long(&self, requested: Duration, allowed: Duration, attempt: u32) -> Step {
        crate::observe::emit(&Event::RetryStopped {
            name: self.settings.name,
            attempt,
            verdict: Verdict::Transient {
                retry_after: Some(requested),
            },
            reason: "retry_after_too_long",
        });
        Step::GiveUp(Box::new(RetryAfterTooLong::new(requested, allowed)))
    }
}

impl<C, P> fmt::Debug for Policy<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.settings.name)
            .field("max_attempts", &self.settings.max_attempts)
            .field("backoff", &self.settings.backoff)
            .field("budget", &self.budget)
            .field("max_retry_after", &self.settings.max_retry_after)
            .field("honor_retry_after", &self.settings.honor_retry_after)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(max_attempts: u32) -> Plain {
        Plain {
            max_attempts,
            backoff: Backoff::default(),
            max_retry_after: Duration::from_secs(60),
            honor_retry_after: true,
            name: "retry",
        }
    }

    #[test]
    fn equal_settings_share_one_interned_copy() {
        let (a, b) = (Settings::new(plain(7)), Settings::new(plain(7)));
        assert_eq!(*a, *b);
        // Another test may have filled the table first.
        if let (Settings::Interned(a), Settings::Interned(b)) = (&a, &b) {
            assert!(std::ptr::eq(*a, *b));
        }
        assert_eq!(Settings::new(plain(8)).max_attempts, 8);
    }

    #[test]
    fn interned_settings_are_bounded() {
        for n in 0..MAX_INTERNED as u32 + 10 {
            assert_eq!(
                Settings::new(plain(1_000_000 + n)).max_attempts,
                1_000_000 + n
            );
        }
        let held = INTERNED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        assert_eq!(held, MAX_INTERNED);
        let counted = Settings::new(plain(u32::MAX));
        assert!(matches!(counted, Settings::Counted(_)));
        assert_eq!(counted.max_attempts, u32::MAX);
    }
}
