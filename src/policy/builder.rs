//! The policy builder: settings, checked alone and against each other.

use super::*;

/// Builds a [`Policy`]; settings are checked, alone and against each
/// other, by [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use steadfast::bulkhead::BulkheadLayer;
/// use steadfast::policy::Policy;
/// use steadfast::retry::RetryLayer;
///
/// let policy = Policy::builder()
///     .name("payments")
///     .total_timeout(Duration::from_secs(2))
///     .bulkhead(BulkheadLayer::builder().max_concurrent(50))
///     .retry(RetryLayer::builder().max_attempts(2))
///     .attempt_timeout(Duration::from_millis(800))
///     .build()?;
/// assert_eq!(policy.name(), "payments");
/// assert_eq!(policy.bulkhead().map(|b| b.max_concurrent()), Some(50));
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct PolicyBuilder<
    C = DefaultClassifier,
    P = CloneReplay,
    R = GenerateRequestId,
    H = Identity,
    F = Identity,
    B = Unkeyed,
    Kb = Unkeyed,
    Ad = Identity,
> {
    pub(super) settings: Settings,
    pub(super) classifier: C,
    pub(super) replay: P,
    pub(super) request_id: R,
    pub(super) hedge: H,
    pub(super) fallback: F,
    pub(super) keyed: B,
    pub(super) bulkheads: Kb,
    pub(super) adaptive: Ad,
}

/// What a [`PolicyBuilder`] keeps besides its type parameters.
#[derive(Debug)]
pub(super) struct Settings {
    pub(super) name: Cow<'static, str>,
    pub(super) observe: Option<ObserveSettings>,
    pub(super) total_timeout: Option<Duration>,
    pub(super) attempt_timeout: Option<Duration>,
    pub(super) retry: Option<RetryLayerBuilder>,
    pub(super) breaker: Option<CircuitBreakerBuilder>,
    pub(super) bulkhead: Option<BulkheadLayerBuilder>,
    pub(super) derive: Derive,
}

impl<C, P, R, H: fmt::Debug, F: fmt::Debug, B: fmt::Debug, Kb: fmt::Debug, Ad: fmt::Debug>
    fmt::Debug for PolicyBuilder<C, P, R, H, F, B, Kb, Ad>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBuilder")
            .field("settings", &self.settings)
            .field("hedge", &self.hedge)
            .field("fallback", &self.fallback)
            .field("keyed", &self.keyed)
            .field("bulkheads", &self.bulkheads)
            .field("adaptive", &self.adaptive)
            .finish_non_exhaustive()
    }
}

impl<C, P, R, H, F, B, Kb, Ad> PolicyBuilder<C, P, R, H, F, B, Kb, Ad> {
    /// Names the policy, in its snapshot, its spans, events and metrics.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// Watches every call, outermost: a span per call, the request id on
    /// every event, call and attempt metrics (feature `metrics`); see
    /// [`ObserveLayer`]. The settings below turn it on too.
    pub fn observe(mut self) -> Self {
        self.observing();
        self
    }

    /// Stops watching calls (no span, no call metrics, no slow-call
    /// alert, no call listeners).
    pub fn no_observe(mut self) -> Self {
        self.settings.observe = None;
        self
    }

    /// Names the route these calls take, for events and metric labels;
    /// watches calls.
    pub fn route(mut self, route: impl Into<Cow<'static, str>>) -> Self {
        self.observing().route = route.into();
        self
    }

    /// Warns when a call takes `threshold` or longer, even if it
    /// succeeds; watches calls.
    pub fn slow_call(mut self, threshold: Duration) -> Self {
        self.observing().slow_call = Some(threshold);
        self
    }

    /// Calls `listener` with every [`Event`](crate::observe::Event) made
    /// inside the policy's calls; watches calls.
    pub fn on_event(
        mut self,
        listener: impl Fn(&crate::observe::Event<'_>) + Send + Sync + 'static,
    ) -> Self {
        let observing = self.observing();
        observing.listeners = std::mem::take(&mut observing.listeners).with(listener);
        self
    }

    /// Records call and attempt metrics (feature `metrics`; off by
    /// default: they cost two clock reads and two histogram records per
    /// call); watches calls.
    pub fn metrics(mut self, on: bool) -> Self {
        self.observing().metrics = on;
        self
    }

    /// Takes request ids from `request_id` (for example a
    /// [`RequestIdHeader`]); watches calls.
    pub fn request_id<R2>(mut self, request_id: R2) -> PolicyBuilder<C, P, R2, H, F, B, Kb, Ad> {
        self.observing();
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay: self.replay,
            request_id,
            hedge: self.hedge,
            fallback: self.fallback,
            keyed: self.keyed,
            bulkheads: self.bulkheads,
            adaptive: self.adaptive,
        }
    }

    fn observing(&mut self) -> &mut ObserveSettings {
        self.settings
            .observe
            .get_or_insert_with(ObserveSettings::default)
    }

    /// Bounds the whole call, retries included.
    pub fn total_timeout(mut self, timeout: Duration) -> Self {
        self.settings.total_timeout = Some(timeout);
        self
    }

    /// No total timeout.
    pub fn no_total_timeout(mut self) -> Self {
        self.settings.total_timeout = None;
        self
    }

    /// Bounds each attempt.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.settings.attempt_timeout = Some(timeout);
        self.settings.derive.attempt = false;
        self
    }

    /// No attempt timeout.
    pub fn no_attempt_timeout(mut self) -> Self {
        self.settings.attempt_timeout = None;
        self.settings.derive.attempt = false;
        self
    }

    /// Retries with these settings; the policy's classifier and replay
    /// replace the builder's.
    pub fn retry(mut self, retry: RetryLayerBuilder) -> Self {
        self.settings.retry = Some(retry);
        self.settings.derive.backoff = false;
        self
    }

    /// No retry.
    pub fn no_retry(mut self) -> Self {
        self.settings.retry = None;
        self.settings.derive.backoff = false;
        self
    }

    /// One circuit breaker for every call, with these settings (in place
    /// of one per key); the policy's classifier replaces the builder's.
    pub fn circuit_breaker(
        mut self,
        breaker: CircuitBreakerBuilder,
    ) -> PolicyBuilder<C, P, R, H, F, Unkeyed, Kb, Ad> {
        self.settings.breaker = Some(breaker);
        self.with_levels(|_, bulkheads| (Unkeyed, bulkheads))
    }

    /// A circuit breaker per key (say, per host) in place of the one
    /// breaker: each key opens and closes on its own, so one failing host
    /// does not refuse calls to the others. Each key's breaker has the
    /// settings of the breaker set so far (a preset's, say, changed with
    /// [`circuit_breaker_with`](Self::circuit_breaker_with), or the
    /// breaker's defaults); `per` says what the key is and how many keys
    /// are kept. The policy's classifier judges, and an unnamed breaker
    /// takes the policy's name. [`Policy::circuit_breakers`] lists the
    /// keys' breakers; [`Policy::circuit_breaker`] shows none.
    ///
    /// ```
    /// # #[cfg(feature = "reqwest")]
    /// # fn main() -> Result<(), steadfast::ConfigError> {
    /// use steadfast::policy::{PerKey, Policy};
    ///
    /// // One breaker per tenant, named by a header.
    /// let tenant = |request: &reqwest::Request| {
    ///     request.headers().get("x-tenant").map(|v| v.as_bytes().to_vec())
    /// };
    /// let policy = Policy::standard_http_client()
    ///     .circuit_breaker_with(|b| b.consecutive_failures(5))
    ///     .circuit_breaker_per(PerKey::new(tenant).max_keys(1_000))
    ///     .build()?;
    /// assert!(policy.circuit_breaker().is_none(), "no single breaker");
    /// assert!(policy.circuit_breakers().is_empty(), "no tenant called yet");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "reqwest"))]
    /// # fn main() {}
    /// ```
    pub fn circuit_breaker_per<K, Fk>(
        mut self,
        per: PerKey<K, Fk>,
    ) -> PolicyBuilder<C, P, R, H, F, PerKey<K, Fk>, Kb, Ad> {
        self.settings
            .breaker
            .get_or_insert_with(CircuitBreakerLayer::builder);
        self.with_levels(|_, bulkheads| (per, bulkheads))
    }

    /// A circuit breaker per host and port ([`PerKey::host`]), with the
    /// settings of the breaker set so far: what the HTTP presets have.
    ///
    /// ```
    /// # #[cfg(feature = "http")]
    /// # fn main() -> Result<(), steadfast::ConfigError> {
    /// use steadfast::policy::Policy;
    /// use steadfast::retry::RetryLayer;
    ///
    /// let policy = Policy::builder()
    ///     .classifier(steadfast::http::HttpClassifier::new())
    ///     .circuit_breaker_with(|b| b.consecutive_failures(5))
    ///     .circuit_breaker_per_host()
    ///     .build()?;
    /// assert!(policy.circuit_breaker().is_none(), "one breaker per host");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "http"))]
    /// # fn main() {}
    /// ```
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn circuit_breaker_per_host(self) -> PolicyBuilder<C, P, R, H, F, PerHost, Kb, Ad> {
        self.circuit_breaker_per(PerKey::host())
    }

    /// No circuit breaker, keyed or not.
    pub fn no_circuit_breaker(mut self) -> PolicyBuilder<C, P, R, H, F, Unkeyed, Kb, Ad> {
        self.settings.breaker = None;
        self.with_levels(|_, bulkheads| (Unkeyed, bulkheads))
    }

    /// A bulkhead with these settings, outside retry (in place of one per
    /// key): a call holds one permit for all its attempts.
    pub fn bulkhead(
        mut self,
        bulkhead: BulkheadLayerBuilder,
    ) -> PolicyBuilder<C, P, R, H, F, B, Unkeyed, Ad> {
        self.settings.bulkhead = Some(bulkhead);
        self.with_levels(|keyed, _| (keyed, Unkeyed))
    }

    /// A bulkhead per key (say, per host) in place of the one bulkhead,
    /// outside retry: each key has its own permits, so calls piling up on
    /// one slow host do not refuse calls to the others. Each key's
    /// bulkhead has the settings of the bulkhead set so far (a preset's,
    /// changed with [`bulkhead_with`](Self::bulkhead_with), or the
    /// bulkhead's defaults); `per` says what the key is and how many keys
    /// are kept. An unnamed bulkhead takes the policy's name.
    /// [`Policy::bulkheads`] lists the keys' bulkheads;
    /// [`Policy::bulkhead`] shows none.
    ///
    /// ```
    /// # #[cfg(feature = "reqwest")]
    /// # fn main() -> Result<(), steadfast::ConfigError> {
    /// use steadfast::policy::{PerKey, Policy, by_host};
    ///
    /// // By host, whatever the port, for at most 1,000 hosts.
    /// let policy = Policy::standard_http_client()
    ///     .bulkhead_with(|b| b.max_concurrent(100))
    ///     .bulkhead_per(PerKey::new(by_host::<reqwest::Request>).max_keys(1_000))
    ///     .build()?;
    /// assert!(policy.bulkhead().is_none(), "no single bulkhead");
    /// assert!(policy.bulkheads().is_empty(), "no host called yet");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "reqwest"))]
    /// # fn main() {}
    /// ```
    pub fn bulkhead_per<K, Fk>(
        mut self,
        per: PerKey<K, Fk>,
    ) -> PolicyBuilder<C, P, R, H, F, B, PerKey<K, Fk>, Ad> {
        self.settings.bulkhead.get_or_insert_with(Default::default);
        self.with_levels(|keyed, _| (keyed, per))
    }

    /// A bulkhead per host and port ([`PerKey::host`]), with the settings
    /// of the bulkhead set so far: what the HTTP presets have.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn bulkhead_per_host(self) -> PolicyBuilder<C, P, R, H, F, B, PerHost, Ad> {
        self.bulkhead_per(PerKey::host())
    }

    /// No bulkhead, keyed or not.
    pub fn no_bulkhead(mut self) -> PolicyBuilder<C, P, R, H, F, B, Unkeyed, Ad> {
        self.settings.bulkhead = None;
        self.with_levels(|keyed, _| (keyed, Unkeyed))
    }

    /// The same builder with other breaker and bulkhead levels: one
    /// ([`Unkeyed`]) or per key ([`PerKey`]) each.
    fn with_levels<B2, Kb2>(
        self,
        levels: impl FnOnce(B, Kb) -> (B2, Kb2),
    ) -> PolicyBuilder<C, P, R, H, F, B2, Kb2, Ad> {
        let (keyed, bulkheads) = levels(self.keyed, self.bulkheads);
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay: self.replay,
            request_id: self.request_id,
            hedge: self.hedge,
            fallback: self.fallback,
            keyed,
            bulkheads,
            adaptive: self.adaptive,
        }
    }

    /// An adaptive concurrency limit with these settings, inside retry and
    /// outside the breaker: each attempt holds one place and is one sample,
    /// and its throttling (if any) refuses locally before the breaker would
    /// open. The policy's classifier replaces the builder's.
    pub fn adaptive(
        self,
        adaptive: AdaptiveLayerBuilder,
    ) -> PolicyBuilder<C, P, R, H, F, B, Kb, AdaptiveLayerBuilder> {
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay: self.replay,
            request_id: self.request_id,
            hedge: self.hedge,
            fallback: self.fallback,
            keyed: self.keyed,
            bulkheads: self.bulkheads,
            adaptive,
        }
    }

    /// No adaptive concurrency limit.
    pub fn no_adaptive(self) -> PolicyBuilder<C, P, R, H, F, B, Kb, Identity> {
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay: self.replay,
            request_id: self.request_id,
            hedge: self.hedge,
            fallback: self.fallback,
            keyed: self.keyed,
            bulkheads: self.bulkheads,
            adaptive: Identity::new(),
        }
    }

    /// Judges attempts, for retry and breaker, with `classifier`.
    pub fn classifier<C2>(self, classifier: C2) -> PolicyBuilder<C2, P, R, H, F, B, Kb, Ad> {
        PolicyBuilder {
            settings: self.settings,
            classifier,
            replay: self.replay,
            request_id: self.request_id,
            hedge: self.hedge,
            fallback: self.fallback,
            keyed: self.keyed,
            bulkheads: self.bulkheads,
            adaptive: self.adaptive,
        }
    }

    /// Copies requests for retry with `replay`.
    pub fn replay<P2>(self, replay: P2) -> PolicyBuilder<C, P2, R, H, F, B, Kb, Ad> {
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay,
            request_id: self.request_id,
            hedge: self.hedge,
            fallback: self.fallback,
            keyed: self.keyed,
            bulkheads: self.bulkheads,
            adaptive: self.adaptive,
        }
    }

    /// Hedges each attempt with these settings, inside retry and outside
    /// the adaptive limit and the breaker: each copy is judged by the
    /// breaker, and a copy of an open circuit is refused cheaply. The
    /// policy's classifier and replay replace the builder's, and a policy
    /// that retries spends its retry budget on hedges too, so retries and
    /// hedges together stay within it.
    pub fn hedge(
        self,
        hedge: HedgeLayerBuilder,
    ) -> PolicyBuilder<C, P, R, HedgeLayerBuilder, F, B, Kb, Ad> {
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay: self.replay,
            request_id: self.request_id,
            hedge,
            fallback: self.fallback,
            keyed: self.keyed,
            bulkheads: self.bulkheads,
            adaptive: self.adaptive,
        }
    }

    /// No hedging.
    pub fn no_hedge(self) -> PolicyBuilder<C, P, R, Identity, F, B, Kb, Ad> {
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay: self.replay,
            request_id: self.request_id,
            hedge: Identity::new(),
            fallback: self.fallback,
            keyed: self.keyed,
            bulkheads: self.bulkheads,
            adaptive: self.adaptive,
        }
    }

    /// Falls back with these sources, outside every other layer but
    /// observe: it sees the failures and rejections of every layer, the
    /// total deadline's included, and its events
    /// ([`FallbackServed`](crate::observe::Event::FallbackServed),
    /// [`FallbackMissed`](crate::observe::Event::FallbackMissed)) reach
    /// the policy's listeners. The policy's classifier replaces the
    /// builder's.
    ///
    /// A fallback that names its request and response types
    /// ([`reqwest`](FallbackLayerBuilder::reqwest),
    /// [`http_for`](FallbackLayerBuilder::http_for)) checks its sources
    /// here and the service at [`layer`](Layer::layer):
    ///
    /// ```compile_fail
    /// # fn main() -> Result<(), steadfast::ConfigError> {
    /// use steadfast::fallback::FallbackLayer;
    /// use steadfast::policy::Policy;
    ///
    /// // A `String` is no `reqwest::Response`: refused here, with
    /// // "the static or computed answer `Static<String>` does not fit
    /// // `reqwest::Response` responses".
    /// let policy = Policy::standard_http_client()
    ///     .fallback(FallbackLayer::builder().static_response(String::from("offline")).reqwest())
    ///     .build()?;
    /// # Ok(())
    /// # }
    /// ```
    #[allow(clippy::type_complexity)] // The builder's own type, spelled once.
    pub fn fallback<A, Ca, Fl, Cf, K>(
        self,
        fallback: FallbackLayerBuilder<A, Ca, Fl, Cf, K>,
    ) -> PolicyBuilder<C, P, R, H, FallbackLayerBuilder<A, Ca, Fl, Cf, K>, B, Kb, Ad>
    where
        K: CheckSources<A, Ca, Fl>,
    {
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay: self.replay,
            request_id: self.request_id,
            hedge: self.hedge,
            fallback,
            keyed: self.keyed,
            bulkheads: self.bulkheads,
            adaptive: self.adaptive,
        }
    }

    /// No fallback.
    pub fn no_fallback(self) -> PolicyBuilder<C, P, R, H, Identity, B, Kb, Ad> {
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay: self.replay,
            request_id: self.request_id,
            hedge: self.hedge,
            fallback: Identity::new(),
            keyed: self.keyed,
            bulkheads: self.bulkheads,
            adaptive: self.adaptive,
        }
    }

    /// Changes the circuit breaker's settings, starting from the ones set
    /// so far (a preset's, for example) or from the breaker's defaults.
    ///
    /// ```
    /// # #[cfg(feature = "http")]
    /// # fn main() -> Result<(), steadfast::ConfigError> {
    /// use std::time::Duration;
    /// use steadfast::policy::Policy;
    ///
    /// // The standard breaker (one per host), but open for 10 s.
    /// let policy = Policy::standard_http_client()
    ///     .circuit_breaker_with(|breaker| breaker.open_duration(Duration::from_secs(10)))
    ///     .build()?;
    /// let api = policy.circuit_breaker_for("api.example:443");
    /// assert_eq!(api.key(), Some("api.example:443"));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "http"))]
    /// # fn main() {}
    /// ```
    pub fn circuit_breaker_with(
        mut self,
        change: impl FnOnce(CircuitBreakerBuilder) -> CircuitBreakerBuilder,
    ) -> Self {
        let breaker = self
            .settings
            .breaker
            .take()
            .unwrap_or_else(CircuitBreakerLayer::builder);
        self.settings.breaker = Some(change(breaker));
        self
    }

    /// Changes the retry settings, starting from the ones set so far or
    /// from retry's defaults. A preset's backoff keeps following the total
    /// timeout unless `change` sets one: it is computed for the total
    /// timeout set when `build` runs.
    pub fn retry_with(
        mut self,
        change: impl FnOnce(RetryLayerBuilder) -> RetryLayerBuilder,
    ) -> Self {
        let retry = self
            .settings
            .retry
            .take()
            .unwrap_or_else(RetryLayer::builder);
        let before = retry.backoff_set();
        let retry = change(retry);
        if retry.backoff_set() != before {
            self.settings.derive.backoff = false;
        }
        self.settings.retry = Some(retry);
        self
    }

    /// Changes the bulkhead's settings, starting from the ones set so far
    /// or from the bulkhead's defaults.
    pub fn bulkhead_with(
        mut self,
        change: impl FnOnce(BulkheadLayerBuilder) -> BulkheadLayerBuilder,
    ) -> Self {
        let bulkhead = self.settings.bulkhead.take().unwrap_or_default();
        self.settings.bulkhead = Some(change(bulkhead));
        self
    }

    /// The circuit breaker's settings so far, if any.
    pub fn circuit_breaker_settings(&self) -> Option<&CircuitBreakerBuilder> {
        self.settings.breaker.as_ref()
    }

    /// The retry settings so far, if any.
    pub fn retry_settings(&self) -> Option<&RetryLayerBuilder> {
        self.settings.retry.as_ref()
    }

    /// The bulkhead's settings so far, if any.
    pub fn bulkhead_settings(&self) -> Option<&BulkheadLayerBuilder> {
        self.settings.bulkhead.as_ref()
    }

    /// Checks every setting and their consistency, and builds the layers.
    #[allow(clippy::type_complexity)] // The built policy's type, spelled once.
    pub fn build(self) -> Result<Built<C, P, R, H, F, B, Kb, Ad>, ConfigError>
    where
        C: Clone,
        Ad: AdaptiveSetting<C>,
        B: BreakerSetting<C>,
        Kb: BulkheadSetting,
        H: HedgeSetting<C, P>,
        F: FallbackSetting<C>,
    {
        let mut s = self.settings;
        s.derive.apply(&mut s);
        // Stateful layers left with their default names take the policy's,
        // so that two policies' state gauges (registered when they are
        // built, outside any call) never mix. Events made inside a call
        // carry the policy's name already.
        let named = (s.name != "default").then(|| s.name.clone());
        let observe = match s.observe {
            Some(settings) => Some(
                ObserveLayerBuilder::from_settings(
                    s.name.clone(),
                    settings,
                    self.classifier.clone(),
                    self.request_id,
                )
                .build()?,
            ),
            None => None,
        };
        let total = s.total_timeout.map(TotalDeadlineLayer::new).transpose()?;
        let attempt = s.attempt_timeout.map(TimeoutLayer::new).transpose()?;
        if let (Some(total), Some(attempt)) = (s.total_timeout, s.attempt_timeout) {
            check::not_above(
                "timeout.attempt",
                attempt,
                "timeout.total",
                total,
                "the attempt timeout must not exceed the total timeout",
            )?;
        }
        if let Some(attempt) = s.attempt_timeout {
            if let Some(span) = self.keyed.time_window_span(s.breaker.as_ref()) {
                if span < attempt.saturating_mul(2) {
                    return Err(ConfigError::conflict(
                        "circuit_breaker.time_window",
                        span,
                        "timeout.attempt",
                        attempt,
                        "the breaker's time window must last at least twice the attempt timeout",
                    ));
                }
            }
        }
        let hedge_replay = self.hedge.replay(&self.replay);
        let retry = match s.retry {
            Some(retry) => Some(
                retry
                    .classifier(self.classifier.clone())
                    .replay(self.replay)
                    .build()?,
            ),
            None => None,
        };
        let hedge = self.hedge.build_level(
            self.classifier.clone(),
            hedge_replay,
            retry.as_ref().and_then(RetryLayer::budget).cloned(),
        )?;
        let fallback = self.fallback.build_level(self.classifier.clone())?;
        if let (Some(retry), Some(total)) = (&retry, s.total_timeout) {
            let backoff = retry.backoff().max_total(retry.max_attempts() - 1);
            if backoff > total {
                return Err(ConfigError::conflict(
                    "retry.backoff",
                    backoff,
                    "timeout.total",
                    total,
                    "the longest backoff of all retries together must fit in the total timeout",
                ));
            }
        }
        let adaptive = self.adaptive.build_level(self.classifier.clone())?;
        let breaker = self
            .keyed
            .build_level(s.breaker, self.classifier, named.clone())?;
        let bulkhead = self.bulkheads.build_level(s.bulkhead, named)?;
        Ok(Policy {
            name: s.name,
            observe,
            fallback,
            hedge,
            total,
            bulkhead,
            retry,
            adaptive,
            breaker,
            attempt,
        })
    }
}
