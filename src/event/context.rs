//! The context of a watched call: policy, route and request id, visible to
//! every layer inside it and to listeners.
//!
//! It lives in a thread-local slot while the call's `call` and its future's
//! `poll` run, and in the future in between, boxed: a call that nobody
//! watches (no subscriber, no listener, no slow-call threshold, no
//! metrics) has none, and one that is watched swaps a pointer in and out
//! per poll.

use std::cell::{Cell, OnceCell, RefCell};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;

use super::scope::Shared;
use crate::classify::Verdict;

thread_local! {
    static CURRENT: RefCell<Option<Box<Context>>> = const { RefCell::new(None) };
}

/// Whether any call was ever watched in this process: until then, the
/// layers' hooks do not even look at the thread-local slot.
static EVER_WATCHED: AtomicBool = AtomicBool::new(false);

#[inline]
fn ever_watched() -> bool {
    EVER_WATCHED.load(Ordering::Relaxed)
}

thread_local! {
    /// Whether a layer with listeners of its own was layered on this thread
    /// since an observe layer last looked.
    static LISTENERS_LAYERED: Cell<bool> = const { Cell::new(false) };
}

/// A layer with listeners of its own (a breaker's `on_event`) wraps a
/// service now: the next observe layer applied around it, on this thread,
/// keeps the context of its calls, for those listeners to read.
pub(crate) fn listeners_layered() {
    LISTENERS_LAYERED.with(|flag| flag.set(true));
}

/// Whether a layer with listeners was layered since the last look; looks.
pub(crate) fn take_listeners_layered() -> bool {
    LISTENERS_LAYERED.with(|flag| flag.replace(false))
}

/// The identifier of a request, carried on every event of its call.
///
/// Taken from a request header when the [`ObserveLayer`](crate::observe::ObserveLayer)
/// is told to read one and the request has it; otherwise generated on
/// first use: a UUID, as `x-request-id` values usually are (tower-http's
/// `MakeRequestUuid`), of version 7 (RFC 9562 §5.7), so that ids sort by
/// the time they were made, in lowercase hyphenated form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Id);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Id {
    Given(Arc<str>),
    Generated(uuid::Uuid),
}

impl RequestId {
    /// A request id with this text.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        RequestId(Id::Given(id.into()))
    }

    /// A new id: a version 7 UUID, unique across processes and hosts, and
    /// ordered by creation within this process.
    pub fn generate() -> Self {
        RequestId(Id::Generated(uuid::Uuid::now_v7()))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Id::Given(text) => f.write_str(text),
            Id::Generated(uuid) => fmt::Display::fmt(&uuid.hyphenated(), f),
        }
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({self})")
    }
}

/// The context of a call watched by an [`ObserveLayer`](crate::observe::ObserveLayer):
/// its policy, route and request id.
///
/// Every event the layers inside the call make carries these, and a
/// listener reads them with [`CallContext::current`]. Like the
/// [`Deadline`](crate::timeout::Deadline), the context follows the task:
/// work handed to another task does not see it.
#[derive(Clone)]
pub struct CallContext {
    shared: Arc<Shared>,
    id: RequestId,
    attempts: u32,
}

impl CallContext {
    /// The context of the call this code runs in, if an
    /// [`ObserveLayer`](crate::observe::ObserveLayer) watches it.
    pub fn current() -> Option<CallContext> {
        if !ever_watched() {
            return None;
        }
        CURRENT.with(|slot| {
            let slot = slot.try_borrow().ok()?;
            let context = slot.as_ref()?;
            Some(CallContext {
                shared: Arc::clone(&context.shared),
                id: context.request_id().clone(),
                attempts: context.attempts.get(),
            })
        })
    }

    /// The policy's name.
    pub fn policy(&self) -> &str {
        &self.shared.policy
    }

    /// The route, empty if none was given: the policy's own
    /// ([`PolicyBuilder::route`](crate::policy::PolicyBuilder::route)), or
    /// else the path pattern of the route it was layered in by a
    /// `http::RouteTable` or, on an axum app,
    /// `http::axum::MatchedPathLayer`.
    pub fn route(&self) -> &str {
        &self.shared.route
    }

    /// The request id.
    pub fn request_id(&self) -> &RequestId {
        &self.id
    }

    /// Attempts finished so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

impl fmt::Debug for CallContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallContext")
            .field("policy", &self.policy())
            .field("route", &self.route())
            .field("request_id", &self.id)
            .field("attempts", &self.attempts)
            .finish()
    }
}

/// The context as it is kept during the call.
pub(crate) struct Context {
    pub(crate) shared: Arc<Shared>,
    id: OnceCell<RequestId>,
    pub(crate) attempts: Cell<u32>,
    /// When the current attempt began, if attempts are timed.
    pub(crate) attempt_start: Cell<Option<Instant>>,
    /// When the call began.
    pub(crate) start: Instant,
    /// The call's span (disabled if no subscriber wants it).
    pub(crate) span: tracing::Span,
}

impl Context {
    pub(crate) fn new(shared: Arc<Shared>, id: Option<RequestId>, span: tracing::Span) -> Self {
        let cell = OnceCell::new();
        if let Some(id) = id {
            let _ = cell.set(id);
        }
        let start = Instant::now();
        if !ever_watched() {
            EVER_WATCHED.store(true, Ordering::Relaxed);
        }
        Self {
            attempt_start: Cell::new(shared.times_attempts().then_some(start)),
            shared,
            id: cell,
            attempts: Cell::new(0),
            start,
            span,
        }
    }

    /// The request id, generated on first use.
    pub(crate) fn request_id(&self) -> &RequestId {
        self.id.get_or_init(RequestId::generate)
    }
}

/// Runs `f` with the context in `slot` current, and puts it back after,
/// even if `f` panics. Nested calls restore the outer context.
#[inline]
pub(crate) fn enter<R>(slot: &mut Option<Box<Context>>, f: impl FnOnce() -> R) -> R {
    struct Restore<'a>(&'a mut Option<Box<Context>>);
    impl Drop for Restore<'_> {
        #[inline]
        fn drop(&mut self) {
            CURRENT.with(|current| {
                if let Ok(mut current) = current.try_borrow_mut() {
                    std::mem::swap(&mut *current, self.0);
                }
            });
        }
    }
    let swapped = CURRENT.with(|current| match current.try_borrow_mut() {
        Ok(mut current) => {
            std::mem::swap(&mut *current, slot);
            true
        }
        Err(_) => false,
    });
    if !swapped {
        return f();
    }
    let _restore = Restore(slot);
    f()
}

/// Runs `f` on the current context, if any. `f` must not enter another
/// call (listeners are not run in here).
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(&Context) -> R) -> Option<R> {
    if !ever_watched() {
        return None;
    }
    CURRENT.with(|slot| slot.try_borrow().ok()?.as_deref().map(f))
}

/// An attempt inside the current call ended with `verdict`: counted, and
/// timed if the call's metrics are on.
#[inline]
pub(crate) fn attempt_ended(verdict: Verdict) {
    with_current(|context| {
        let attempt = context.attempts.get().saturating_add(1);
        context.attempts.set(attempt);
        tracing::trace!(
            target: "steadfast::observe",
            policy = %context.shared.policy,
            route = %context.shared.route,
            request_id = %context.request_id(),
            attempt,
            verdict = verdict.as_str(),
            "attempt ended"
        );
        if context.shared.times_attempts() {
            record_attempt(context, verdict);
        }
    });
}

/// Another attempt inside the current call begins now.
#[inline]
pub(crate) fn attempt_started() {
    with_current(|context| {
        if context.shared.times_attempts() {
            context.attempt_start.set(Some(Instant::now()));
        }
    });
}

/// Records one attempt's metrics; the context times attempts.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn record_attempt(context: &Context, verdict: Verdict) {
    #[cfg(feature = "metrics")]
    if let Some(metrics) = &context.shared.metrics {
        let now = tokio::time::Instant::now();
        let elapsed = context
            .attempt_start
            .replace(Some(now))
            .map_or(std::time::Duration::ZERO, |start| {
                now.saturating_duration_since(start)
            });
        metrics.attempt(verdict, elapsed);
    }
}
