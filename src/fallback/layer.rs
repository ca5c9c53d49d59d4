use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::Fallback;
use super::Shared;
use super::budget::MAX_BUDGET;
#[cfg(feature = "cache")]
use super::budget::{Background, Cancel, StaleAfter};
#[cfg(feature = "cache")]
use super::cache::FallbackCache;
use super::cache::NoCache;
#[cfg(feature = "http")]
use super::check::Checked;
use super::check::{CheckService, CheckSources};
use super::source::{
    Alternate, Cause, Computed, NoAlternate, NoLast, NoMark, Plain, Static, Trigger,
};
use crate::classify::DefaultClassifier;
use crate::error::{ConfigError, check};
use crate::replay::CloneReplay;

/// Answers failed or refused calls from the best source still standing.
/// See the [module docs](super).
///
/// Every service this layer makes, and every clone of it, shares one set
/// of sources (and one cache).
pub struct FallbackLayer<
    A = NoAlternate,
    Ca = NoCache,
    F = NoLast,
    C = DefaultClassifier,
    K = Plain,
> {
    shared: Arc<Shared<A, Ca, F, C, K>>,
}

impl FallbackLayer {
    /// Starts a builder: no source yet, fires on [`Trigger::ALL`], judges
    /// outcomes with the [`DefaultClassifier`], plain (non-HTTP) responses.
    pub fn builder() -> FallbackLayerBuilder {
        FallbackLayerBuilder {
            alternate: NoAlternate,
            cache: NoCache,
            last: NoLast,
            classifier: DefaultClassifier,
            kind: Plain { mark: NoMark },
            settings: Settings {
                on: Trigger::ALL,
                name: Cow::Borrowed("fallback"),
                cache_first: false,
                sources: 0,
                stale_after: None,
                background: None,
            },
        }
    }
}

impl<A, Ca, F, C, K> FallbackLayer<A, Ca, F, C, K> {
    /// The reasons this layer fires on.
    pub fn trigger(&self) -> Trigger {
        self.shared.on
    }
}

impl<A, Ca, F, C, K> Clone for FallbackLayer<A, Ca, F, C, K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<A, Ca, F, C, K> fmt::Debug for FallbackLayer<A, Ca, F, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("name", &self.shared.name)
            .field("on", &self.shared.on)
            .finish_non_exhaustive()
    }
}

impl<S, A, Ca, F, C, K> Layer<S> for FallbackLayer<A, Ca, F, C, K>
where
    K: CheckService<S, Ca, C>,
{
    type Service = Fallback<S, A, Ca, F, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback::from_shared(inner, Arc::clone(&self.shared))
    }
}

/// The settings that don't change the builder's type.
#[derive(Debug, Clone)]
struct Settings {
    on: Trigger,
    name: Cow<'static, str>,
    cache_first: bool,
    sources: u8,
    // The latency budget and the cap on calls left running, checked by
    // `build`; the values in use are in the cache source.
    stale_after: Option<Duration>,
    background: Option<usize>,
}

/// Builds a [`FallbackLayer`]; settings are checked by
/// [`build`](Self::build).
///
/// Sources are tried in this order, each only if given: the
/// [`alternate`](Self::alternate) service, the [`cache`](Self::cache), the
/// [`static`](Self::static_response) or [`computed`](Self::compute) answer.
///
/// ```
/// use steadfast::fallback::{FallbackLayer, Trigger};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), steadfast::BoxError> {
/// let layer = FallbackLayer::builder()
///     .static_response(String::from("cached page"))
///     .on(Trigger::FAILURES)
///     .build()?;
/// let service = layer.layer(service_fn(|_: ()| async {
///     Err::<String, steadfast::BoxError>("connection refused".into())
/// }));
/// assert_eq!(service.oneshot(()).await?, "cached page");
///
/// // A fallback with no source is refused.
/// let err = FallbackLayer::builder().build().unwrap_err();
/// assert_eq!(err.field(), "fallback.sources");
/// # Ok(())
/// # }
/// ```
pub struct FallbackLayerBuilder<
    A = NoAlternate,
    Ca = NoCache,
    F = NoLast,
    C = DefaultClassifier,
    K = Plain,
> {
    alternate: A,
    cache: Ca,
    last: F,
    classifier: C,
    kind: K,
    settings: Settings,
}

impl<A, Ca, F, C, K> FallbackLayerBuilder<A, Ca, F, C, K> {
    /// First source: `service` (another API, region or version) is called
    /// with a copy of the original request, made by cloning it; see
    /// [`replay`](FallbackLayerBuilder::replay) for requests that aren't
    /// `Clone`. Its answer counts if the classifier judges it a success or
    /// a functional error; its failure moves on to the next source.
    ///
    /// The copy is made before every primary call, since the request is
    /// gone once the primary has it.
    pub fn alternate<T>(
        self,
        service: T,
    ) -> FallbackLayerBuilder<Alternate<T, CloneReplay>, Ca, F, C, K> {
        FallbackLayerBuilder {
            alternate: Alternate {
                service,
                replay: CloneReplay,
            },
            cache: self.cache,
            last: self.last,
            classifier: self.classifier,
            kind: self.kind,
            settings: self.settings.add_source(),
        }
    }

    #[cfg(feature = "cache")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
    /// Second source: the freshest answer `cache` recorded for the same
    /// key, if no older than its staleness limit. Every success of the
    /// primary is recorded into it.
    pub fn cache<Key>(
        self,
        cache: FallbackCache<Key>,
    ) -> FallbackLayerBuilder<A, FallbackCache<Key>, F, C, K> {
        let mut settings = self.settings.add_source();
        (settings.stale_after, settings.background) = (None, None);
        FallbackLayerBuilder {
            alternate: self.alternate,
            cache,
            last: self.last,
            classifier: self.classifier,
            kind: self.kind,
            settings,
        }
    }

    /// Last source: `value`, the same answer to every failed call. For
    /// HTTP it is an `http::Response<Bytes>`.
    pub fn static_response<V>(self, value: V) -> FallbackLayerBuilder<A, Ca, Static<V>, C, K> {
        self.last(Static(value))
    }

    /// Last source: an answer computed from what `facts` keeps of the
    /// request (taken before the primary call) and the [`Cause`] of the
    /// failure; `make` may decline with `None`. For HTTP it returns an
    /// `http::Response<Bytes>`.
    pub fn compute<Req, Res, T, V, G, H>(
        self,
        facts: G,
        make: H,
    ) -> FallbackLayerBuilder<A, Ca, Computed<G, H, T>, C, K>
    where
        G: Fn(&Req) -> T,
        H: Fn(T, &Cause<'_, Res>) -> Option<V>,
    {
        self.last(Computed {
            facts,
            make,
            _kept: std::marker::PhantomData,
        })
    }

    fn last<F2>(self, last: F2) -> FallbackLayerBuilder<A, Ca, F2, C, K> {
        FallbackLayerBuilder {
            alternate: self.alternate,
            cache: self.cache,
            last,
            classifier: self.classifier,
            kind: self.kind,
            settings: self.settings.add_source(),
        }
    }

    /// Fires on these reasons only (default [`Trigger::ALL`]).
    pub fn on(mut self, on: Trigger) -> Self {
        self.settings.on = on;
        self
    }

    /// Tries the cache before the alternate service (default: after).
    pub fn cache_first(mut self, cache_first: bool) -> Self {
        self.settings.cache_first = cache_first;
        self
    }

    /// The name events of this layer carry (default `"fallback"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// Judges the primary's outcomes, and the alternate's answers, with
    /// `classifier`.
    pub fn classifier<C2>(self, classifier: C2) -> FallbackLayerBuilder<A, Ca, F, C2, K> {
        FallbackLayerBuilder {
            alternate: self.alternate,
            cache: self.cache,
            last: self.last,
            classifier,
            kind: self.kind,
            settings: self.settings,
        }
    }

    fn kind<K2>(self, kind: K2) -> FallbackLayerBuilder<A, Ca, F, C, K2> {
        FallbackLayerBuilder {
            alternate: self.alternate,
            cache: self.cache,
            last: self.last,
            classifier: self.classifier,
            kind,
            settings: self.settings,
        }
    }

    /// Checks the settings and builds the layer.
    ///
    /// With the request and response types named
    /// ([`reqwest`](Self::reqwest), [`http_for`](Self::http_for)), it also
    /// checks that every source takes the request and gives the response:
    /// a mismatch is a compile error here, naming the source.
    pub fn build(self) -> Result<FallbackLayer<A, Ca, F, C, K>, ConfigError>
    where
        K: CheckSources<A, Ca, F>,
    {
        let s = self.settings;
        if s.on.is_empty() {
            return Err(ConfigError::new(
                "fallback.on",
                s.on,
                "must fire on at least one failure or rejection",
            ));
        }
        if s.sources == 0 {
            return Err(ConfigError::new(
                "fallback.sources",
                "none",
                "must name at least one source: alternate, cache, static or computed",
            ));
        }
        if let Some(after) = s.stale_after {
            if after.is_zero() || after > MAX_BUDGET {
                return Err(ConfigError::new(
                    "fallback.serve_stale_after",
                    after,
                    "must be greater than zero and at most 1 h",
                ));
            }
        }
        if let Some(max_calls) = s.background {
            check::at_least("fallback.finish_in_background", max_calls, 1)?;
        }
        Ok(FallbackLayer {
            shared: Arc::new(Shared {
                alternate: self.alternate,
                cache: self.cache,
                last: self.last,
                classifier: self.classifier,
                kind: self.kind,
                on: s.on,
                name: s.name,
                cache_first: s.cache_first,
                decisions: crate::event::Decisions::new(),
            }),
        })
    }
}

impl Settings {
    fn add_source(mut self) -> Self {
        self.sources = self.sources.saturating_add(1);
        self
    }
}

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
impl<A, Key, F, C, K> FallbackLayerBuilder<A, FallbackCache<Key>, F, C, K> {
    /// Serves the cached answer to a call that is still under way after
    /// `wait`, its latency budget, instead of letting it wait on for the
    /// primary (and whatever retries and deadlines are inside it); a
    /// cached answer is worth more at 100 ms than at the deadline.
    ///
    /// The budget runs from the call, and matters only to a request whose
    /// answer may be cached and has been: with no cached answer (or none
    /// young enough) when it passes, the call goes on and is answered as
    /// if no budget were set. A call that fails before its budget is
    /// passed to the sources as usual.
    ///
    /// The slow call is dropped once its caller has the cached answer;
    /// [`finish_in_background`](FallbackLayerBuilder::finish_in_background)
    /// lets it run to its end instead, so that the layers inside the
    /// fallback (a breaker) learn its outcome. The answer is reported by a
    /// [`FallbackServed`](crate::event::Event::FallbackServed) event with
    /// source `cache` and reason `latency_budget`, whatever the
    /// [`Trigger`].
    ///
    /// `wait` must be greater than zero and at most 1 h.
    pub fn serve_stale_after(
        self,
        wait: Duration,
    ) -> FallbackLayerBuilder<A, StaleAfter<Key, Cancel>, F, C, K> {
        let mut settings = self.settings;
        settings.stale_after = Some(wait);
        FallbackLayerBuilder {
            alternate: self.alternate,
            cache: StaleAfter {
                cache: self.cache,
                after: wait,
                late: Cancel,
            },
            last: self.last,
            classifier: self.classifier,
            kind: self.kind,
            settings,
        }
    }
}

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
impl<A, Key, F, C, K> FallbackLayerBuilder<A, StaleAfter<Key, Cancel>, F, C, K> {
    /// A slow call whose caller was served from the cache runs on in a
    /// tokio task until it ends, rather than being dropped: the breaker
    /// and retry budget inside the fallback see it fail (or succeed), so
    /// that in an outage where calls hang the breaker still opens and
    /// later calls are refused at once. Its answer is not passed on, nor
    /// recorded. The service's futures must be `Send + 'static`.
    ///
    /// At most `max_calls` (at least 1) run in the background at once, all
    /// services of the layer together; past that, a slow call is dropped.
    /// Each ends when its own deadline does, so the stack inside the
    /// fallback needs a total deadline. See [`Background`].
    pub fn finish_in_background(
        self,
        max_calls: usize,
    ) -> FallbackLayerBuilder<A, StaleAfter<Key, Background>, F, C, K> {
        let mut settings = self.settings;
        settings.background = Some(max_calls);
        FallbackLayerBuilder {
            alternate: self.alternate,
            cache: StaleAfter {
                cache: self.cache.cache,
                after: self.cache.after,
                late: Background::new(max_calls),
            },
            last: self.last,
            classifier: self.classifier,
            kind: self.kind,
            settings,
        }
    }
}

impl<T, P, Ca, F, C, K> FallbackLayerBuilder<Alternate<T, P>, Ca, F, C, K> {
    /// Copies requests for the alternate with `replay` (a
    /// [`Replay`](crate::retry::Replay), or a closure
    /// `Fn(&Req) -> Option<Req>`); a request it can't copy skips the
    /// alternate.
    pub fn replay<P2>(self, replay: P2) -> FallbackLayerBuilder<Alternate<T, P2>, Ca, F, C, K> {
        FallbackLayerBuilder {
            alternate: Alternate {
                service: self.alternate.service,
                replay,
            },
            cache: self.cache,
            last: self.last,
            classifier: self.classifier,
            kind: self.kind,
            settings: self.settings,
        }
    }
}

impl<A, Ca, F, C, M> FallbackLayerBuilder<A, Ca, F, C, Plain<M>> {
    /// Marks each fallback answer with its source, with `mark` (a
    /// [`Mark`](super::Mark) or a closure `Fn(&mut Res, &FallbackSource)`).
    pub fn mark<M2>(self, mark: M2) -> FallbackLayerBuilder<A, Ca, F, C, Plain<M2>> {
        self.kind(Plain { mark })
    }

    /// Serves `http::Response<B>`s: bodies are recorded as they are read
    /// and rebuilt from bytes, and fallback answers carry their
    /// [`FallbackSource`](super::FallbackSource) in their extensions. See
    /// [`Http`](super::Http).
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    ///
    /// Works on `http::Response<B>` and, with the `reqwest` feature, on
    /// `reqwest::Response`; the types are checked where the service is
    /// first called. [`reqwest`](Self::reqwest) and
    /// [`http_for`](Self::http_for) name them, so that `build()` and
    /// `layer()` check them.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http(self) -> FallbackLayerBuilder<A, Ca, F, C, super::Http> {
        self.kind(super::Http::default())
    }

    /// Serves HTTP responses as [`http`](Self::http) does, for requests of
    /// type `Req` and responses of type `Res`: [`build`](Self::build)
    /// checks that every source takes `Req` and gives `Res`, and `layer()`
    /// that the service does, each naming the piece that does not fit.
    ///
    /// For hyper-util's client, `Req` is `http::Request<B>` and `Res`
    /// `http::Response<hyper::body::Incoming>`.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn http_for<Req, Res>(
        self,
    ) -> FallbackLayerBuilder<A, Ca, F, C, super::Http<Checked<Req, Res>>> {
        self.kind(super::Http::default())
    }

    /// Serves reqwest: [`http_for`](Self::http_for) with `reqwest::Request`
    /// and `reqwest::Response`. Answers are recorded as their body is read
    /// and rebuilt from head and bytes, their URL included; see
    /// [`Http`](super::Http).
    #[cfg(feature = "reqwest")]
    #[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
    pub fn reqwest(
        self,
    ) -> FallbackLayerBuilder<A, Ca, F, C, super::Http<Checked<reqwest::Request, reqwest::Response>>>
    {
        self.http_for()
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<A, Ca, F, C, T> FallbackLayerBuilder<A, Ca, F, C, super::Http<T>> {
    /// Also names the source of each fallback answer in the header `name`
    /// (`alternate`, `cache` or `static`), replacing any value the answer
    /// had.
    pub fn source_header(self, name: http::HeaderName) -> Self {
        self.kind(super::Http::with_header(Some(name)))
    }
}

impl<A, Ca, F, C, K> fmt::Debug for FallbackLayerBuilder<A, Ca, F, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayerBuilder")
            .field("on", &self.settings.on)
            .field("name", &self.settings.name)
            .field("cache_first", &self.settings.cache_first)
            .field("stale_after", &self.settings.stale_after)
            .field("background", &self.settings.background)
            .finish_non_exhaustive()
    }
}
