//! A built policy whose levels its file chooses: one breaker or one per
//! host, one bulkhead or one per host, hedging or not.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::{Identity, Layer};
use tower_service::Service;

use crate::BoxError;
use crate::bulkhead::{BulkheadHandle, BulkheadLayer, KeyedBulkheadLayer};
use crate::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, KeyedCircuitBreakerLayer};
use crate::classify::DefaultClassifier;
use crate::hedge::HedgeLayer;
use crate::keyed::KeyOf;
use crate::observe::{GenerateRequestId, ObserveLayer, PolicyStatus};
use crate::policy::{Optional, PerKey, Policy};
use crate::retry::{CloneReplay, RetryBudget};

/// What a per-host level of a [`PolicySet`](super::PolicySet) is keyed
/// by: [`NoHost`] for requests of any type, where a file's
/// `per = "host"` is refused, or [`ByHost`](crate::http::ByHost) for HTTP
/// requests ([`build_http_with`](super::PolicySetConfig::build_http_with)).
pub trait HostLevel: Sized {
    /// The key a per-host level stores.
    type Key: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static;

    /// The per-host setting, if requests of this set have a host.
    fn per_host() -> Option<PerKey<Self::Key, Self>>;
}

/// The [`HostLevel`] of a set built for requests of any type: none has a
/// host, so a file's `per = "host"` is refused when it is built.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHost;

impl<Req> KeyOf<Req> for NoHost {
    type Key = ();
    type Lookup<'r>
        = ()
    where
        Req: 'r;

    #[inline]
    fn key_of(&self, _: &Req) {}
}

impl HostLevel for NoHost {
    type Key = ();

    fn per_host() -> Option<PerKey<(), Self>> {
        None
    }
}

#[cfg(feature = "http")]
impl HostLevel for crate::http::ByHost {
    type Key = crate::http::HostKey;

    fn per_host() -> Option<PerKey<crate::http::HostKey, Self>> {
        Some(PerKey::host())
    }
}

/// A per-host breaker level keyed by `K`.
pub type HostBreaker<C, K> = KeyedCircuitBreakerLayer<<K as HostLevel>::Key, K, C>;
/// A per-host bulkhead level keyed by `K`.
pub type HostBulkhead<K> = KeyedBulkheadLayer<<K as HostLevel>::Key, K>;
type OneBreaker<C> = Optional<CircuitBreakerLayer<C>>;
type OneBulkhead = Option<BulkheadLayer>;

/// A policy of a [`PolicySet`](super::PolicySet): the [`Policy`] its
/// settings make, whose type says which levels it has. A policy with one
/// breaker (or none), one bulkhead (or none) and no hedging is
/// [`Plain`](Self::Plain), the same type and cost as the policy built in
/// code; the others are keyed or hedged.
///
/// It is a layer, as each of its policies is; the service it makes calls
/// the one policy's service there is.
#[non_exhaustive]
pub enum ConfigPolicy<
    C = DefaultClassifier,
    P = CloneReplay,
    R = GenerateRequestId,
    K: HostLevel = NoHost,
> {
    /// One breaker and one bulkhead (or none), no hedging.
    Plain(V1<C, P, R>),
    /// A breaker per host.
    HostBreaker(V2<C, P, R, K>),
    /// A bulkhead per host.
    HostBulkhead(V3<C, P, R, K>),
    /// A breaker and a bulkhead per host.
    Host(V4<C, P, R, K>),
    /// Hedging, one breaker and one bulkhead (or none).
    Hedged(V5<C, P, R>),
    /// Hedging and a breaker per host.
    HedgedHostBreaker(V6<C, P, R, K>),
    /// Hedging and a bulkhead per host.
    HedgedHostBulkhead(V7<C, P, R, K>),
    /// Hedging, a breaker and a bulkhead per host.
    HedgedHost(V8<C, P, R, K>),
}

/// Runs `$e` on the policy of every variant.
macro_rules! each {
    ($self:expr, $p:ident => $e:expr) => {
        match $self {
            ConfigPolicy::Plain($p) => $e,
            ConfigPolicy::HostBreaker($p) => $e,
            ConfigPolicy::HostBulkhead($p) => $e,
            ConfigPolicy::Host($p) => $e,
            ConfigPolicy::Hedged($p) => $e,
            ConfigPolicy::HedgedHostBreaker($p) => $e,
            ConfigPolicy::HedgedHostBulkhead($p) => $e,
            ConfigPolicy::HedgedHost($p) => $e,
        }
    };
}

impl<C, P, R, K: HostLevel> ConfigPolicy<C, P, R, K> {
    /// The policy's name.
    pub fn name(&self) -> &str {
        each!(self, p => p.name())
    }

    /// The policy as built in code, if it has one breaker and one bulkhead
    /// (or none) and no hedging.
    pub fn plain(&self) -> Option<&Policy<C, P, R>> {
        match self {
            Self::Plain(policy) => Some(policy),
            _ => None,
        }
    }

    /// The observe layer, if the policy has one.
    pub fn observer(&self) -> Option<&ObserveLayer<C, R>> {
        each!(self, p => p.observer())
    }

    /// The total timeout, if any.
    pub fn total_timeout(&self) -> Option<std::time::Duration> {
        each!(self, p => p.total_timeout())
    }

    /// The attempt timeout, if any.
    pub fn attempt_timeout(&self) -> Option<std::time::Duration> {
        each!(self, p => p.attempt_timeout())
    }

    /// The retry budget, if the policy retries with one.
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        each!(self, p => p.retry_budget())
    }

    /// The hedging layer, if the policy hedges.
    pub fn hedge(&self) -> Option<&HedgeLayer<C, P>> {
        match self {
            Self::Hedged(p) => Some(p.hedge()),
            Self::HedgedHostBreaker(p) => Some(p.hedge()),
            Self::HedgedHostBulkhead(p) => Some(p.hedge()),
            Self::HedgedHost(p) => Some(p.hedge()),
            _ => None,
        }
    }

    /// Whether the breaker is one per host.
    pub fn breaker_per_host(&self) -> bool {
        matches!(
            self,
            Self::HostBreaker(_) | Self::Host(_) | Self::HedgedHostBreaker(_) | Self::HedgedHost(_)
        )
    }

    /// Whether the bulkhead is one per host.
    pub fn bulkhead_per_host(&self) -> bool {
        matches!(
            self,
            Self::HostBulkhead(_)
                | Self::Host(_)
                | Self::HedgedHostBulkhead(_)
                | Self::HedgedHost(_)
        )
    }
}

impl<C, P, R, K> ConfigPolicy<C, P, R, K>
where
    C: Clone + Send + Sync + 'static,
    K: HostLevel,
{
    /// The one breaker, if the policy has one that is not per host.
    pub fn circuit_breaker(&self) -> Option<CircuitBreakerHandle> {
        each!(self, p => p.circuit_breaker())
    }

    /// Every breaker there is now: the one, or each host's.
    pub fn circuit_breakers(&self) -> Vec<CircuitBreakerHandle> {
        each!(self, p => p.circuit_breakers())
    }

    /// The one bulkhead, if the policy has one that is not per host.
    pub fn bulkhead(&self) -> Option<BulkheadHandle> {
        each!(self, p => p.bulkhead())
    }

    /// Every bulkhead there is now: the one, or each host's.
    pub fn bulkheads(&self) -> Vec<BulkheadHandle> {
        each!(self, p => p.bulkheads())
    }

    /// The state of every stateful layer of the policy.
    pub fn snapshot(&self) -> PolicyStatus {
        each!(self, p => p.snapshot())
    }
}

impl<C: Clone, P: Clone, R: Clone, K: HostLevel + Clone> Clone for ConfigPolicy<C, P, R, K> {
    fn clone(&self) -> Self {
        match self {
            Self::Plain(p) => Self::Plain(p.clone()),
            Self::HostBreaker(p) => Self::HostBreaker(p.clone()),
            Self::HostBulkhead(p) => Self::HostBulkhead(p.clone()),
            Self::Host(p) => Self::Host(p.clone()),
            Self::Hedged(p) => Self::Hedged(p.clone()),
            Self::HedgedHostBreaker(p) => Self::HedgedHostBreaker(p.clone()),
            Self::HedgedHostBulkhead(p) => Self::HedgedHostBulkhead(p.clone()),
            Self::HedgedHost(p) => Self::HedgedHost(p.clone()),
        }
    }
}

impl<C, P, R, K: HostLevel> fmt::Debug for ConfigPolicy<C, P, R, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        each!(self, p => fmt::Debug::fmt(p, f))
    }
}

/// The policy types of the variants of [`ConfigPolicy`], in order.
type V1<C, P, R> = Policy<C, P, R>;
type V2<C, P, R, K> = Policy<C, P, R, Identity, Identity, HostBreaker<C, K>, OneBulkhead>;
type V3<C, P, R, K> = Policy<C, P, R, Identity, Identity, OneBreaker<C>, HostBulkhead<K>>;
type V4<C, P, R, K> = Policy<C, P, R, Identity, Identity, HostBreaker<C, K>, HostBulkhead<K>>;
type V5<C, P, R> = Policy<C, P, R, HedgeLayer<C, P>, Identity, OneBreaker<C>, OneBulkhead>;
type V6<C, P, R, K> = Policy<C, P, R, HedgeLayer<C, P>, Identity, HostBreaker<C, K>, OneBulkhead>;
type V7<C, P, R, K> = Policy<C, P, R, HedgeLayer<C, P>, Identity, OneBreaker<C>, HostBulkhead<K>>;
type V8<C, P, R, K> =
    Policy<C, P, R, HedgeLayer<C, P>, Identity, HostBreaker<C, K>, HostBulkhead<K>>;

impl<S, C, P, R, K> Layer<S> for ConfigPolicy<C, P, R, K>
where
    K: HostLevel,
    V1<C, P, R>: Layer<S>,
    V2<C, P, R, K>: Layer<S>,
    V3<C, P, R, K>: Layer<S>,
    V4<C, P, R, K>: Layer<S>,
    V5<C, P, R>: Layer<S>,
    V6<C, P, R, K>: Layer<S>,
    V7<C, P, R, K>: Layer<S>,
    V8<C, P, R, K>: Layer<S>,
{
    #[allow(clippy::type_complexity)] // Each variant's service, spelled once.
    type Service = ConfigService<
        <V1<C, P, R> as Layer<S>>::Service,
        <V2<C, P, R, K> as Layer<S>>::Service,
        <V3<C, P, R, K> as Layer<S>>::Service,
        <V4<C, P, R, K> as Layer<S>>::Service,
        <V5<C, P, R> as Layer<S>>::Service,
        <V6<C, P, R, K> as Layer<S>>::Service,
        <V7<C, P, R, K> as Layer<S>>::Service,
        <V8<C, P, R, K> as Layer<S>>::Service,
    >;

    fn layer(&self, service: S) -> Self::Service {
        match self {
            Self::Plain(p) => ConfigService::V1(p.layer(service)),
            Self::HostBreaker(p) => ConfigService::V2(p.layer(service)),
            Self::HostBulkhead(p) => ConfigService::V3(p.layer(service)),
            Self::Host(p) => ConfigService::V4(p.layer(service)),
            Self::Hedged(p) => ConfigService::V5(p.layer(service)),
            Self::HedgedHostBreaker(p) => ConfigService::V6(p.layer(service)),
            Self::HedgedHostBulkhead(p) => ConfigService::V7(p.layer(service)),
            Self::HedgedHost(p) => ConfigService::V8(p.layer(service)),
        }
    }
}

/// The service a [`ConfigPolicy`] makes: its one policy's service.
#[derive(Debug, Clone)]
#[allow(missing_docs)] // One variant per variant of `ConfigPolicy`, in order.
pub enum ConfigService<A, B, C, D, E, F, G, H> {
    V1(A),
    V2(B),
    V3(C),
    V4(D),
    V5(E),
    V6(F),
    V7(G),
    V8(H),
}

pin_project_lite::pin_project! {
    /// The future of a [`ConfigService`]'s call.
    #[project = ConfigFutureProj]
    #[allow(missing_docs)]
    pub enum ConfigFuture<A, B, C, D, E, F, G, H> {
        V1 { #[pin] future: A },
        V2 { #[pin] future: B },
        V3 { #[pin] future: C },
        V4 { #[pin] future: D },
        V5 { #[pin] future: E },
        V6 { #[pin] future: F },
        V7 { #[pin] future: G },
        V8 { #[pin] future: H },
    }
}

impl<T, A, B, C, D, E, F, G, H> Future for ConfigFuture<A, B, C, D, E, F, G, H>
where
    A: Future<Output = Result<T, BoxError>>,
    B: Future<Output = Result<T, BoxError>>,
    C: Future<Output = Result<T, BoxError>>,
    D: Future<Output = Result<T, BoxError>>,
    E: Future<Output = Result<T, BoxError>>,
    F: Future<Output = Result<T, BoxError>>,
    G: Future<Output = Result<T, BoxError>>,
    H: Future<Output = Result<T, BoxError>>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ConfigFutureProj::V1 { future } => future.poll(cx),
            ConfigFutureProj::V2 { future } => future.poll(cx),
            ConfigFutureProj::V3 { future } => future.poll(cx),
            ConfigFutureProj::V4 { future } => future.poll(cx),
            ConfigFutureProj::V5 { future } => future.poll(cx),
            ConfigFutureProj::V6 { future } => future.poll(cx),
            ConfigFutureProj::V7 { future } => future.poll(cx),
            ConfigFutureProj::V8 { future } => future.poll(cx),
        }
    }
}

impl<Req, T, A, B, C, D, E, F, G, H> Service<Req> for ConfigService<A, B, C, D, E, F, G, H>
where
    A: Service<Req, Response = T, Error = BoxError>,
    B: Service<Req, Response = T, Error = BoxError>,
    C: Service<Req, Response = T, Error = BoxError>,
    D: Service<Req, Response = T, Error = BoxError>,
    E: Service<Req, Response = T, Error = BoxError>,
    F: Service<Req, Response = T, Error = BoxError>,
    G: Service<Req, Response = T, Error = BoxError>,
    H: Service<Req, Response = T, Error = BoxError>,
{
    type Response = T;
    type Error = BoxError;
    type Future = ConfigFuture<
        A::Future,
        B::Future,
        C::Future,
        D::Future,
        E::Future,
        F::Future,
        G::Future,
        H::Future,
    >;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::V1(s) => s.poll_ready(cx),
            Self::V2(s) => s.poll_ready(cx),
            Self::V3(s) => s.poll_ready(cx),
            Self::V4(s) => s.poll_ready(cx),
            Self::V5(s) => s.poll_ready(cx),
            Self::V6(s) => s.poll_ready(cx),
            Self::V7(s) => s.poll_ready(cx),
            Self::V8(s) => s.poll_ready(cx),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Self::V1(s) => ConfigFuture::V1 {
                future: s.call(request),
            },
            Self::V2(s) => ConfigFuture::V2 {
                future: s.call(request),
            },
            Self::V3(s) => ConfigFuture::V3 {
                future: s.call(request),
            },
            Self::V4(s) => ConfigFuture::V4 {
                future: s.call(request),
            },
            Self::V5(s) => ConfigFuture::V5 {
                future: s.call(request),
            },
            Self::V6(s) => ConfigFuture::V6 {
                future: s.call(request),
            },
            Self::V7(s) => ConfigFuture::V7 {
                future: s.call(request),
            },
            Self::V8(s) => ConfigFuture::V8 {
                future: s.call(request),
            },
        }
    }
}
