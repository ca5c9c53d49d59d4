//! The latency budget: serve the cached answer once a call has waited too
//! long, and what becomes of the call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::cache::NoCache;
#[cfg(feature = "cache")]
use super::cache::{CacheKey, CacheSource, FallbackCache, Slot};

/// The longest latency budget [`serve_stale_after`] accepts.
///
/// [`serve_stale_after`]: super::FallbackLayerBuilder::serve_stale_after
pub(crate) const MAX_BUDGET: Duration = Duration::from_secs(3_600);

/// A [`FallbackCache`] whose answers are also served to calls that have
/// waited longer than a latency budget (stale-while-revalidate, or
/// stale-if-error with a timeout). Made by
/// [`FallbackLayerBuilder::serve_stale_after`](super::FallbackLayerBuilder::serve_stale_after).
///
/// `D` says what becomes of the slow call once its caller has the cached
/// answer: [`Cancel`] drops it, [`Background`] lets it run to its end.
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub struct StaleAfter<K, D = Cancel> {
    pub(crate) cache: FallbackCache<K>,
    pub(crate) after: Duration,
    pub(crate) late: D,
}

#[cfg(feature = "cache")]
impl<K, D> StaleAfter<K, D> {
    /// The cache answers come from.
    pub fn cache(&self) -> &FallbackCache<K> {
        &self.cache
    }

    /// How long a call waits before its cached answer is served.
    pub fn after(&self) -> Duration {
        self.after
    }
}

#[cfg(feature = "cache")]
impl<K, D: Clone> Clone for StaleAfter<K, D> {
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            after: self.after,
            late: self.late.clone(),
        }
    }
}

#[cfg(feature = "cache")]
impl<K, D: fmt::Debug> fmt::Debug for StaleAfter<K, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaleAfter")
            .field("cache", &self.cache)
            .field("after", &self.after)
            .field("late", &self.late)
            .finish()
    }
}

#[cfg(feature = "cache")]
impl<Req, K: CacheKey<Req>, D> CacheSource<Req> for StaleAfter<K, D> {
    #[inline]
    fn slot(&self, request: &Req) -> Option<Slot> {
        self.cache.slot(request)
    }
}

/// A slow call whose caller got the cached answer is dropped at once: the
/// layers inside it release what they hold, and the dependency sees the
/// connection go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cancel;

/// A slow call whose caller got the cached answer runs on in a tokio task
/// until it ends, so the layers inside it (a breaker, a retry budget) learn
/// its outcome; its answer is not passed on, and not recorded.
///
/// At most `max_calls` run in the background at once (all services of one
/// layer together); past that, or outside a tokio runtime, a slow call is
/// dropped as with [`Cancel`]. A call in the background ends when its own
/// deadline passes: give the stack inside the fallback a total deadline.
#[derive(Debug, Clone)]
pub struct Background {
    pub(crate) max_calls: usize,
    pub(crate) running: Arc<AtomicUsize>,
}

impl Background {
    pub(crate) fn new(max_calls: usize) -> Self {
        Self {
            max_calls,
            running: Arc::default(),
        }
    }

    /// The most calls run in the background at once.
    pub fn max_calls(&self) -> usize {
        self.max_calls
    }

    /// How many calls run in the background now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }
}

/// The cache source's latency budget, and what becomes of a call past it
/// whose caller was served from the cache. Implemented by every cache
/// source; only [`StaleAfter`] has a budget.
#[diagnostic::on_unimplemented(
    message = "the latency budget `{Self}` can't hand on calls of type `{Fut}`",
    label = "calls can't run on in the background",
    note = "`finish_in_background` runs slow calls on in a tokio task: the service's futures must be `Send + 'static`"
)]
pub trait LatencyBudget<Fut> {
    /// The timer of a call's budget: tokio's `Sleep` for a source with a
    /// budget, a timer that never fires (and takes no room in the call's
    /// future) for one without.
    type Timer: Future<Output = ()>;

    /// How long a call waits before the cached answer is served; `None`
    /// for no budget.
    fn budget(&self) -> Option<Duration>;

    /// The timer of a budget of `after`, armed from now.
    fn arm(&self, after: Duration) -> Self::Timer;

    /// Whether a slow call is kept (and must be boxed to be handed on).
    fn keeps_late_calls(&self) -> bool;

    /// Takes over a slow call whose caller has been answered.
    fn late_call(&self, call: Pin<Box<Fut>>);
}

impl<Fut> LatencyBudget<Fut> for NoCache {
    type Timer = std::future::Pending<()>;

    #[inline]
    fn arm(&self, _after: Duration) -> Self::Timer {
        std::future::pending()
    }

    #[inline]
    fn budget(&self) -> Option<Duration> {
        None
    }

    #[inline]
    fn keeps_late_calls(&self) -> bool {
        false
    }

    fn late_call(&self, _call: Pin<Box<Fut>>) {}
}

#[cfg(feature = "cache")]
impl<K, Fut> LatencyBudget<Fut> for FallbackCache<K> {
    type Timer = std::future::Pending<()>;

    #[inline]
    fn arm(&self, _after: Duration) -> Self::Timer {
        std::future::pending()
    }

    #[inline]
    fn budget(&self) -> Option<Duration> {
        None
    }

    #[inline]
    fn keeps_late_calls(&self) -> bool {
        false
    }

    fn late_call(&self, _call: Pin<Box<Fut>>) {}
}

#[cfg(feature = "cache")]
impl<K, Fut> LatencyBudget<Fut> for StaleAfter<K, Cancel> {
    type Timer = tokio::time::Sleep;

    #[inline]
    fn arm(&self, after: Duration) -> Self::Timer {
        tokio::time::sleep(after)
    }

    #[inline]
    fn budget(&self) -> Option<Duration> {
        Some(self.after)
    }

    #[inline]
    fn keeps_late_calls(&self) -> bool {
        false
    }

    fn late_call(&self, _call: Pin<Box<Fut>>) {}
}

#[cfg(feature = "cache")]
#[diagnostic::do_not_recommend]
impl<K, Fut> LatencyBudget<Fut> for StaleAfter<K, Background>
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    type Timer = tokio::time::Sleep;

    #[inline]
    fn arm(&self, after: Duration) -> Self::Timer {
        tokio::time::sleep(after)
    }

    #[inline]
    fn budget(&self) -> Option<Duration> {
        Some(self.after)
    }

    #[inline]
    fn keeps_late_calls(&self) -> bool {
        true
    }

    fn late_call(&self, call: Pin<Box<Fut>>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            dropped("no tokio runtime");
            return;
        };
        let Some(guard) = Running::enter(&self.late) else {
            dropped("too many calls in the background");
            return;
        };
        runtime.spawn(async move {
            let _ = call.await;
            drop(guard);
        });
    }
}

#[cold]
fn dropped(why: &'static str) {
    tracing::debug!(
        target: "steadfast::fallback",
        layer = "fallback",
        why,
        "slow call dropped after its cached answer was served"
    );
}

/// One call counted as running in the background until dropped.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn enter(late: &Background) -> Option<Self> {
        late.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < late.max_calls).then_some(n + 1)
            })
            .ok()?;
        Some(Self(Arc::clone(&late.running)))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
