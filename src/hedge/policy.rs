//! The settings of a hedge or race, shared by every service and future.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::latency::Histogram;
use crate::budget::RetryBudget;
use crate::classify::Verdict;
use crate::event::HedgeRefusal;

/// When the next copy of a request is sent.
pub(crate) enum Delay {
    /// After a fixed delay; zero sends every copy at once.
    Fixed(Duration),
    /// At a percentile of recent latencies, never below a floor.
    Percentile(Box<Histogram>),
}

pub(crate) struct Policy<C, P> {
    /// Copies sent besides the first.
    pub(crate) max_hedges: u32,
    pub(crate) delay: Delay,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) classifier: C,
    pub(crate) replay: P,
    /// `"hedge"` or `"race"`, as events name the policy.
    pub(crate) kind: &'static str,
    pub(crate) name: Cow<'static, str>,
    pub(crate) hedges_sent: AtomicU64,
    /// The metric series of its decisions, made with the layer.
    pub(crate) decisions: crate::event::Decisions,
}

impl<C, P> Policy<C, P> {
    /// The wait before the next copy, `None` while it is unknown.
    #[inline]
    pub(crate) fn delay(&self) -> Option<Duration> {
        match &self.delay {
            Delay::Fixed(d) => Some(*d),
            Delay::Percentile(histogram) => histogram.delay(),
        }
    }

    /// Counts a latency, if the delay is derived from them.
    #[inline]
    pub(crate) fn record(&self, latency: Duration) {
        if let Delay::Percentile(histogram) = &self.delay {
            histogram.record(latency);
        }
    }

    #[inline]
    pub(crate) fn learns(&self) -> bool {
        matches!(self.delay, Delay::Percentile(_))
    }

    pub(crate) fn count_hedge(&self) {
        self.hedges_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// The one place events of this policy leave from, counted in its
    /// series.
    pub(crate) fn emit(&self, event: Event, copy: u32, delay: Option<Duration>) {
        let name = &*self.name;
        match event {
            Event::Sent => self.report(&crate::event::Event::HedgeSent {
                name,
                copy,
                delay: delay.unwrap_or_default(),
            }),
            Event::Refused(reason) => self.report(&crate::event::Event::HedgeRefused {
                layer: self.kind,
                name,
                copy,
                reason,
            }),
            Event::Won { copies } if copies > 1 => {
                self.report(&crate::event::Event::HedgeWon { name, copy });
            }
            // The first request answered and no copy was sent: the success
            // path, which makes no event.
            Event::Won { .. } => {}
            Event::AllFailed(verdict) => {
                self.report(&crate::event::Event::HedgeFailed {
                    layer: self.kind,
                    name,
                    copies: copy,
                    verdict,
                });
            }
        }
    }

    #[cold]
    fn report(&self, event: &crate::event::Event<'_>) {
        crate::event::emit_counted(&self.decisions, &crate::event::Listeners::none(), event);
    }
}

/// What events report.
#[derive(Clone, Copy)]
pub(crate) enum Event {
    Sent,
    Refused(HedgeRefusal),
    /// A copy answered; `copies` were sent, the first request included.
    Won {
        copies: u32,
    },
    AllFailed(Verdict),
}

impl<C, P> fmt::Debug for Policy<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Policy");
        d.field("kind", &self.kind)
            .field("name", &self.name)
            .field("max_hedges", &self.max_hedges);
        match &self.delay {
            Delay::Fixed(delay) => d.field("delay", delay),
            Delay::Percentile(h) => d
                .field("percentile", &h.percentile())
                .field("floor", &h.floor())
                .field("delay", &h.delay()),
        };
        d.field("budget", &self.budget).finish_non_exhaustive()
    }
}
