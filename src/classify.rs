//! Outcome verdicts: one judgement of every attempt, read by every policy.
//!
//! A failure is not a functional error. A 404 or a validation error is the
//! callee answering correctly; a reset connection, a 503 or a timeout is the
//! callee failing. A [`Classify`] implementation turns each attempt's
//! `Result<&Response, &Error>` into a [`Verdict`], and every policy acts on
//! that verdict:
//!
//! | verdict | retry | breaker counts it | fallback fires |
//! |---|---|---|---|
//! | [`Success`](Verdict::Success) | no | as success | no |
//! | [`FunctionalError`](Verdict::FunctionalError) | no | as success | no |
//! | [`Transient`](Verdict::Transient) | yes | as failure | yes |
//! | [`Failure`](Verdict::Failure) | no | as failure | yes |
//! | [`Rejected`](Verdict::Rejected) | no | not at all | yes |
//!
//! A *rejection* is a policy of this crate refusing to call at all (circuit
//! open, bulkhead full, rate limited, deadline passed). Rejections are
//! recognised before any classifier runs, so a custom classifier never has
//! to know about them and no policy retries into an open circuit.
//!
//! # Classifiers
//!
//! - [`DefaultClassifier`]: `Ok` is a success, `Err` a transient failure.
//! - Any closure `Fn(Result<&Res, &E>) -> Verdict`.
//! - Your own type implementing [`Classify`], which may keep facts about
//!   the request (say, whether its method is idempotent) to judge its
//!   outcome.
//!
//! ```
//! use steadfast::classify::{Classify, Verdict};
//!
//! #[derive(Debug)]
//! struct Status(u16);
//!
//! // 5xx are failures, 503 may be retried, everything else is an answer.
//! let by_status = |outcome: Result<&Status, &std::io::Error>| match outcome {
//!     Ok(Status(503)) => Verdict::transient(),
//!     Ok(Status(s)) if *s >= 500 => Verdict::Failure,
//!     Ok(Status(s)) if *s >= 400 => Verdict::FunctionalError,
//!     Ok(_) => Verdict::Success,
//!     Err(_) => Verdict::transient(),
//! };
//!
//! // What a policy does with it, for each attempt:
//! fn judge_attempt<C>(c: &C, request: &(), outcome: Result<&Status, &std::io::Error>) -> Verdict
//! where
//!     C: Classify<(), Status, std::io::Error>,
//! {
//!     let facts = c.facts(request); // before sending
//!     c.classify(&facts, outcome) // once the outcome is known
//! }
//! assert_eq!(judge_attempt(&by_status, &(), Ok(&Status(404))), Verdict::FunctionalError);
//! assert!(judge_attempt(&by_status, &(), Ok(&Status(503))).is_retryable());
//! ```

use std::time::Duration;

/// The judgement of one attempt's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// The callee answered as hoped.
    Success,
    /// The callee answered correctly that the request can't be served
    /// (a 404, a validation error). Not a failure of the callee.
    FunctionalError,
    /// The callee failed in a way that may pass: a reset connection, a
    /// timeout, a 503. Retried by default.
    Transient {
        /// How long the callee asked the caller to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The callee failed and trying again won't help, or is not safe.
    Failure,
    /// A policy of this crate refused to make the call.
    Rejected {
        /// When the policy expects to accept calls again, if known.
        retry_after: Option<Duration>,
    },
}

impl Verdict {
    /// A transient failure without a retry-after hint.
    pub const fn transient() -> Self {
        Verdict::Transient { retry_after: None }
    }

    /// A transient failure whose callee asked to wait `after`.
    pub const fn transient_after(after: Duration) -> Self {
        Verdict::Transient {
            retry_after: Some(after),
        }
    }

    /// Whether a breaker counts this as a failure (transient or not).
    pub const fn is_failure(&self) -> bool {
        matches!(self, Verdict::Transient { .. } | Verdict::Failure)
    }

    /// Whether the callee answered (success or functional error).
    pub const fn is_answer(&self) -> bool {
        matches!(self, Verdict::Success | Verdict::FunctionalError)
    }

    /// Whether retry may try again.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Verdict::Transient { .. })
    }

    /// Whether a policy refused the call.
    pub const fn is_rejection(&self) -> bool {
        matches!(self, Verdict::Rejected { .. })
    }

    /// The wait the callee or the refusing policy asked for, if any.
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Verdict::Transient { retry_after } | Verdict::Rejected { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// A stable lowercase name, as used in events and metric labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::FunctionalError => "functional_error",
            Verdict::Transient { .. } => "transient",
            Verdict::Failure => "failure",
            Verdict::Rejected { .. } => "rejected",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Judges the outcome of an attempt.
///
/// `Facts` is what the classifier keeps from the request before it is sent,
/// to judge its outcome afterwards: an HTTP classifier keeps whether the
/// method is idempotent; most classifiers keep nothing (`()`). Policies call
/// [`facts`](Classify::facts) once per attempt before calling the inner
/// service, then [`classify`](Classify::classify) with its outcome.
///
/// Closures `Fn(Result<&Res, &E>) -> Verdict` implement this trait.
pub trait Classify<Req, Res, E> {
    /// What the classifier keeps from the request.
    type Facts;

    /// Takes what the verdict will depend on from the request.
    fn facts(&self, request: &Req) -> Self::Facts;

    /// Judges one attempt's outcome.
    fn classify(&self, facts: &Self::Facts, outcome: Result<&Res, &E>) -> Verdict;

    /// Whether a second copy of the request may be sent while the first
    /// may still reach the callee: what hedging and racing ask before
    /// sending a copy on a timer, with no failure to go by. `true` by
    /// default; the HTTP classifier (`http::HttpClassifier`) answers
    /// `false` for a non-idempotent request, which is then never hedged.
    #[inline]
    fn may_overlap(&self, facts: &Self::Facts) -> bool {
        let _ = facts;
        true
    }
}

impl<F, Req, Res, E> Classify<Req, Res, E> for F
where
    F: Fn(Result<&Res, &E>) -> Verdict,
{
    type Facts = ();

    #[inline]
    fn facts(&self, _request: &Req) -> Self::Facts {}

    #[inline]
    fn classify(&self, _facts: &(), outcome: Result<&Res, &E>) -> Verdict {
        self(outcome)
    }
}

/// `Ok` is a success, `Err` a transient failure.
///
/// The classifier for services that are not HTTP: any error may pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

impl<Req, Res, E> Classify<Req, Res, E> for DefaultClassifier {
    type Facts = ();

    #[inline]
    fn facts(&self, _request: &Req) -> Self::Facts {}

    #[inline]
    fn classify(&self, _facts: &(), outcome: Result<&Res, &E>) -> Verdict {
        match outcome {
            Ok(_) => Verdict::Success,
            Err(_) => Verdict::transient(),
        }
    }
}

/// The verdict every policy acts on: rejections by this crate's policies
/// are recognised first, then `classifier` judges the rest.
#[inline]
pub fn judge<C, Req, Res, E>(classifier: &C, facts: &C::Facts, outcome: Result<&Res, &E>) -> Verdict
where
    C: Classify<Req, Res, E>,
    E: 'static,
{
    if let Err(err) = outcome {
        if let Some((_, retry_after)) = crate::error::Rejection::of_any(err) {
            return Verdict::Rejected { retry_after };
        }
    }
    classifier.classify(facts, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{BoxError, CircuitOpen};

    #[test]
    fn default_classifier() {
        let c = DefaultClassifier;
        let ok: Result<&u8, &BoxError> = Ok(&1);
        assert_eq!(judge::<_, (), _, _>(&c, &(), ok), Verdict::Success);
        let err: BoxError = "reset".into();
        assert_eq!(
            judge::<_, (), u8, _>(&c, &(), Err(&err)),
            Verdict::transient()
        );
    }

    #[test]
    fn rejections_come_before_the_classifier() {
        let always_success = |_: Result<&u8, &BoxError>| Verdict::Success;
        let open: BoxError = Box::new(CircuitOpen::new(Duration::from_secs(2)));
        let v = judge::<_, (), _, _>(&always_success, &(), Err(&open));
        assert_eq!(
            v,
            Verdict::Rejected {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert!(v.is_rejection() && !v.is_failure() && !v.is_retryable());
    }

    #[test]
    fn verdict_predicates() {
        assert!(Verdict::FunctionalError.is_answer());
        assert!(!Verdict::FunctionalError.is_failure());
        assert!(Verdict::Failure.is_failure() && !Verdict::Failure.is_retryable());
        let v = Verdict::transient_after(Duration::from_secs(1));
        assert_eq!(v.retry_after(), Some(Duration::from_secs(1)));
        assert_eq!(v.to_string(), "transient");
    }
}
