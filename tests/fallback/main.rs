//! Fallback: each source, the chain, triggers, the original error, the
//! cache's staleness on paused time and its bound, settings and events.

#[cfg(feature = "http")]
mod alloc;
mod budget;
#[path = "../support/capture.rs"]
mod capture;
#[cfg(feature = "http")]
#[path = "../support/counting_alloc.rs"]
mod counting_alloc;
mod events;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "http")]
mod integration;
#[cfg(all(feature = "reqwest", feature = "hyper", feature = "axum"))]
mod reqwest_client;
#[cfg(feature = "http")]
mod rfc9111;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::classify::Verdict;
use steadfast::error::{CircuitOpen, DeadlineExceeded, RateLimited};
use steadfast::fallback::{FallbackCache, FallbackLayer, FallbackSource, Reason, Trigger};
use steadfast::retry::NoReplay;
use steadfast::timeout::TotalDeadlineLayer;
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_ok};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

/// A reply that says where it came from.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    text: String,
    source: Option<FallbackSource>,
}

fn reply(text: impl Into<String>) -> Reply {
    Reply {
        text: text.into(),
        source: None,
    }
}

fn mark(reply: &mut Reply, source: &FallbackSource) {
    reply.source = Some(*source);
}

/// A backend that answers `"{name}:{request}"` while up, and fails with
/// `"{name} down"` otherwise; counts its calls.
#[derive(Clone)]
struct Backend {
    name: &'static str,
    up: Arc<AtomicBool>,
    calls: Arc<AtomicU32>,
}

impl Backend {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            up: Arc::new(AtomicBool::new(true)),
            calls: Arc::default(),
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(
        &self,
    ) -> impl Service<u32, Response = Reply, Error = BoxError, Future: Send> + Clone {
        let this = self.clone();
        service_fn(move |request: u32| {
            this.calls.fetch_add(1, Ordering::SeqCst);
            let answer = if this.up.load(Ordering::SeqCst) {
                Ok(reply(format!("{}:{request}", this.name)))
            } else {
                Err(BoxError::from(format!("{} down", this.name)))
            };
            std::future::ready(answer)
        })
    }
}

fn cache(staleness: Duration) -> FallbackCache<steadfast::fallback::RequestKey> {
    FallbackCache::builder()
        .capacity(100)
        .max_staleness(staleness)
        .build()
        .expect("valid settings")
}

#[tokio::test]
async fn successes_and_functional_errors_pass_through() {
    let primary = Backend::new("primary");
    let alternate = Backend::new("alternate");
    // Request 404 is answered "not found": a functional error.
    let classify = |outcome: Result<&Reply, &BoxError>| match outcome {
        Ok(r) if r.text.ends_with(":404") => Verdict::FunctionalError,
        Ok(_) => Verdict::Success,
        Err(_) => Verdict::transient(),
    };
    let mut svc = FallbackLayer::builder()
        .alternate(alternate.service())
        .classifier(classify)
        .mark(mark)
        .build()
        .unwrap()
        .layer(primary.service());

    let ok = svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(ok, reply("primary:1"));
    let not_found = svc.ready().await.unwrap().call(404).await.unwrap();
    assert_eq!(not_found, reply("primary:404"));
    assert_eq!(alternate.calls(), 0);
}

#[tokio::test]
async fn alternate_answers_when_the_primary_fails() {
    let primary = Backend::new("primary");
    let alternate = Backend::new("alternate");
    primary.set_up(false);
    let svc = FallbackLayer::builder()
        .alternate(alternate.service())
        .mark(mark)
        .build()
        .unwrap()
        .layer(primary.service());

    let answer = svc.oneshot(7).await.unwrap();
    assert_eq!(
        answer.text, "alternate:7",
        "called with the original request"
    );
    assert_eq!(answer.source, Some(FallbackSource::Alternate));
    assert_eq!((primary.calls(), alternate.calls()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn the_chain_alternate_then_cache_then_static_then_the_original_error() {
    let primary = Backend::new("primary");
    let alternate = Backend::new("alternate");
    let layer = FallbackLayer::builder()
        .alternate(alternate.service())
        .cache(cache(Duration::from_secs(60)))
        .compute(
            |request: &u32| *request,
            |request: u32, _cause: &steadfast::fallback::Cause<'_, Reply>| {
                (request != 13).then(|| reply(format!("static:{request}")))
            },
        )
        .mark(mark)
        .build()
        .unwrap();
    let mut svc = layer.layer(primary.service());

    // Recorded while the primary is up.
    assert_eq!(
        svc.ready().await.unwrap().call(1).await.unwrap(),
        reply("primary:1")
    );

    primary.set_up(false);
    let a = svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(
        (a.text.as_str(), a.source),
        ("alternate:1", Some(FallbackSource::Alternate))
    );

    alternate.set_up(false);
    advance(Duration::from_secs(5)).await;
    let c = svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(c.text, "primary:1");
    assert_eq!(
        c.source,
        Some(FallbackSource::Cache {
            age: Duration::from_secs(5)
        })
    );

    let s = svc.ready().await.unwrap().call(2).await.unwrap();
    assert_eq!(
        (s.text.as_str(), s.source),
        ("static:2", Some(FallbackSource::Static))
    );

    // The computed answer declines request 13: the primary's own error
    // comes back, not the alternate's.
    let err = svc.ready().await.unwrap().call(13).await.unwrap_err();
    assert_eq!(err.to_string(), "primary down");
}

#[tokio::test]
async fn every_source_failing_returns_the_original_error() {
    let primary = Backend::new("primary");
    let alternate = Backend::new("alternate");
    primary.set_up(false);
    alternate.set_up(false);
    let svc = FallbackLayer::builder()
        .alternate(alternate.service())
        .cache(cache(Duration::from_secs(60)))
        .build()
        .unwrap()
        .layer(primary.service());
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "primary down");
    assert_eq!(alternate.calls(), 1);
}

#[tokio::test]
async fn a_request_that_cannot_be_copied_skips_the_alternate() {
    let primary = Backend::new("primary");
    let alternate = Backend::new("alternate");
    primary.set_up(false);
    let svc = FallbackLayer::builder()
        .alternate(alternate.service())
        .replay(NoReplay)
        .static_response(reply("static"))
        .mark(mark)
        .build()
        .unwrap()
        .layer(primary.service());
    let answer = svc.oneshot(1).await.unwrap();
    assert_eq!(answer.source, Some(FallbackSource::Static));
    assert_eq!(alternate.calls(), 0);
}

#[tokio::test]
async fn an_alternate_answer_judged_a_failure_moves_on() {
    // The alternate answers, but with a reply the classifier calls a failure.
    let primary = Backend::new("primary");
    primary.set_up(false);
    let broken = service_fn(|_: u32| std::future::ready(Ok::<_, BoxError>(reply("error page"))));
    let svc = FallbackLayer::builder()
        .alternate(broken)
        .static_response(reply("static"))
        .classifier(|outcome: Result<&Reply, &BoxError>| match outcome {
            Ok(r) if r.text == "error page" => Verdict::Failure,
            Ok(_) => Verdict::Success,
            Err(_) => Verdict::transient(),
        })
        .mark(mark)
        .build()
        .unwrap()
        .layer(primary.service());
    assert_eq!(
        svc.oneshot(1).await.unwrap().source,
        Some(FallbackSource::Static)
    );
}

#[tokio::test]
async fn a_failed_answer_is_the_original_outcome_when_nothing_answers() {
    // The primary answers with a failure (a 503, say): with no source left
    // it comes back as it was, unmarked.
    let primary = service_fn(|_: u32| std::future::ready(Ok::<_, BoxError>(reply("503"))));
    let svc = FallbackLayer::builder()
        .cache(cache(Duration::from_secs(1)))
        .classifier(|outcome: Result<&Reply, &BoxError>| match outcome {
            Ok(r) if r.text == "503" => Verdict::transient(),
            _ => Verdict::Success,
        })
        .mark(mark)
        .build()
        .unwrap()
        .layer(primary);
    assert_eq!(svc.oneshot(1).await.unwrap(), reply("503"));
}

#[tokio::test]
async fn compute_sees_what_it_kept_of_the_request_and_the_cause() {
    let svc = FallbackLayer::builder()
        .compute(
            |request: &(u32, &'static str)| request.1,
            |user: &'static str, cause: &steadfast::fallback::Cause<'_, Reply>| {
                let why = cause.error().map(ToString::to_string).unwrap_or_default();
                Some(reply(format!(
                    "{user}:{}:{}:{why}",
                    cause.reason(),
                    cause.verdict()
                )))
            },
        )
        .build()
        .unwrap()
        .layer(service_fn(|_: (u32, &'static str)| {
            std::future::ready(Err::<Reply, _>(BoxError::from(CircuitOpen::new(
                Duration::ZERO,
            ))))
        }));
    let answer = svc.oneshot((1, "ada")).await.unwrap();
    assert_eq!(answer.text, "ada:circuit_open:rejected:circuit open");
}

#[tokio::test]
async fn the_trigger_chooses_what_fires() {
    let fails_with = |err: fn() -> BoxError| {
        service_fn(move |_: u32| std::future::ready(Err::<Reply, _>(err())))
    };
    let layer = FallbackLayer::builder()
        .static_response(reply("static"))
        .on(Trigger::CIRCUIT_OPEN | Trigger::RATE_LIMITED)
        .build()
        .unwrap();
    assert!(layer.trigger().contains(Reason::RateLimited));

    let open = layer.layer(fails_with(|| {
        Box::new(CircuitOpen::new(Duration::from_secs(1)))
    }));
    assert_eq!(open.oneshot(1).await.unwrap().text, "static");
    let limited = layer.layer(fails_with(|| {
        Box::new(RateLimited::new(Duration::from_secs(1)))
    }));
    assert_eq!(limited.oneshot(1).await.unwrap().text, "static");
    let late = layer.layer(fails_with(|| Box::new(DeadlineExceeded::new())));
    assert!(late.oneshot(1).await.unwrap_err().is::<DeadlineExceeded>());
    let reset = layer.layer(fails_with(|| "connection reset".into()));
    assert_eq!(
        reset.oneshot(1).await.unwrap_err().to_string(),
        "connection reset"
    );

    // The default fires on every failure and every rejection.
    let all = FallbackLayer::builder()
        .static_response(reply("static"))
        .build()
        .unwrap();
    assert_eq!(all.trigger(), Trigger::ALL);
    for err in [
        (|| "reset".into()) as fn() -> BoxError,
        || Box::new(DeadlineExceeded::new()),
        || Box::new(steadfast::error::BulkheadFull::new()),
    ] {
        assert_eq!(
            all.layer(fails_with(err)).oneshot(1).await.unwrap().text,
            "static"
        );
    }
}

#[tokio::test]
async fn fires_on_the_refusals_of_real_policies() {
    let primary = Backend::new("primary");
    let breaker = CircuitBreakerLayer::builder().build().unwrap();
    let svc = ServiceBuilder::new()
        .layer(
            FallbackLayer::builder()
                .static_response(reply("static"))
                .mark(mark)
                .build()
                .unwrap(),
        )
        .layer(breaker.clone())
        .service(primary.service());
    breaker.handle().force_open();
    let answer = svc.oneshot(1).await.unwrap();
    assert_eq!(answer.source, Some(FallbackSource::Static));
    assert_eq!(primary.calls(), 0);
}

#[tokio::test]
async fn fires_when_a_bulkhead_is_full() {
    let (inner, mut handle) = mock::pair::<u32, Reply>();
    let mut svc = ServiceBuilder::new()
        .layer(
            FallbackLayer::builder()
                .static_response(reply("static"))
                .on(Trigger::BULKHEAD_FULL)
                .build()
                .unwrap(),
        )
        .layer(BulkheadLayer::builder().max_concurrent(1).build().unwrap())
        .service(inner);
    handle.allow(2);
    let mut first = tokio_test::task::spawn(svc.ready().await.unwrap().call(1));
    assert_pending!(first.poll());
    let second = svc.ready().await.unwrap().call(2).await.unwrap();
    assert_eq!(second.text, "static");
    assert_request_eq!(handle, 1).send_response(reply("primary:1"));
    assert_eq!(assert_ready_ok!(first.poll()).text, "primary:1");
}

#[tokio::test(start_paused = true)]
async fn fires_when_the_total_deadline_passes() {
    let (inner, mut handle) = mock::pair::<u32, Reply>();
    let svc = ServiceBuilder::new()
        .layer(
            FallbackLayer::builder()
                .static_response(reply("static"))
                .build()
                .unwrap(),
        )
        .layer(TotalDeadlineLayer::new(Duration::from_millis(100)).unwrap())
        .service(inner);
    handle.allow(1);
    let call = tokio::spawn(svc.oneshot(1));
    let _pending = handle.next_request().await.unwrap();
    advance(Duration::from_millis(101)).await;
    assert_eq!(call.await.unwrap().unwrap().text, "static");
}

#[tokio::test(start_paused = true)]
async fn a_cached_answer_older_than_the_staleness_limit_is_never_served() {
    let primary = Backend::new("primary");
    let cache = cache(Duration::from_secs(30));
    let mut svc = FallbackLayer::builder()
        .cache(cache.clone())
        .mark(mark)
        .build()
        .unwrap()
        .layer(primary.service());
    svc.ready().await.unwrap().call(1).await.unwrap();
    primary.set_up(false);

    advance(Duration::from_secs(30)).await;
    let served = svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(
        served.source,
        Some(FallbackSource::Cache {
            age: Duration::from_secs(30)
        })
    );

    advance(Duration::from_millis(1)).await;
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(err.to_string(), "primary down");

    // A fresh success is served again.
    primary.set_up(true);
    svc.ready().await.unwrap().call(1).await.unwrap();
    primary.set_up(false);
    advance(Duration::from_secs(1)).await;
    let served = svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(
        served.source,
        Some(FallbackSource::Cache {
            age: Duration::from_secs(1)
        })
    );
}

#[tokio::test(start_paused = true)]
async fn the_freshest_answer_is_served() {
    let version = Arc::new(AtomicU32::new(1));
    let up = Arc::new(AtomicBool::new(true));
    let primary = service_fn({
        let (version, up) = (version.clone(), up.clone());
        move |_: u32| {
            let answer = if up.load(Ordering::SeqCst) {
                Ok(reply(format!("v{}", version.load(Ordering::SeqCst))))
            } else {
                Err(BoxError::from("down"))
            };
            std::future::ready(answer)
        }
    });
    let mut svc = FallbackLayer::builder()
        .cache(cache(Duration::from_secs(60)))
        .build()
        .unwrap()
        .layer(primary);
    svc.ready().await.unwrap().call(1).await.unwrap();
    advance(Duration::from_secs(10)).await;
    version.store(2, Ordering::SeqCst);
    svc.ready().await.unwrap().call(1).await.unwrap();
    up.store(false, Ordering::SeqCst);
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap().text, "v2");
}

#[tokio::test]
async fn the_cache_holds_at_most_its_capacity() {
    let primary = Backend::new("primary");
    let cache = FallbackCache::builder().capacity(50).build().unwrap();
    let mut svc = FallbackLayer::builder()
        .cache(cache.clone())
        .build()
        .unwrap()
        .layer(primary.service());
    for request in 0..5_000 {
        svc.ready().await.unwrap().call(request).await.unwrap();
    }
    cache.run_pending_tasks();
    assert!(cache.entry_count() <= 50, "held {}", cache.entry_count());
    assert!(cache.entry_count() > 0);
    assert_eq!(cache.capacity(), 50);
}

#[tokio::test]
async fn a_custom_key_decides_what_is_cached_and_shared() {
    // Keyed by the item only (the second field is a trace id), and item 0
    // is never cached.
    let up = Arc::new(AtomicBool::new(true));
    let primary = service_fn({
        let up = up.clone();
        move |(item, trace): (u32, u32)| {
            let answer = if up.load(Ordering::SeqCst) {
                Ok(reply(format!("{item}/{trace}")))
            } else {
                Err(BoxError::from("down"))
            };
            std::future::ready(answer)
        }
    });
    let cache = FallbackCache::builder()
        .key(|(item, _trace): &(u32, u32)| (*item != 0).then_some(*item))
        .build()
        .unwrap();
    let mut svc = FallbackLayer::builder()
        .cache(cache)
        .build()
        .unwrap()
        .layer(primary);
    svc.ready().await.unwrap().call((1, 100)).await.unwrap();
    svc.ready().await.unwrap().call((0, 100)).await.unwrap();
    up.store(false, Ordering::SeqCst);
    assert_eq!(
        svc.ready()
            .await
            .unwrap()
            .call((1, 200))
            .await
            .unwrap()
            .text,
        "1/100"
    );
    assert!(svc.ready().await.unwrap().call((0, 200)).await.is_err());
}

#[tokio::test]
async fn services_of_one_layer_share_the_cache() {
    let primary = Backend::new("primary");
    let layer = FallbackLayer::builder()
        .cache(cache(Duration::from_secs(60)))
        .build()
        .unwrap();
    let first = layer.clone().layer(primary.service());
    first.oneshot(3).await.unwrap();
    primary.set_up(false);
    let second = layer.layer(primary.service());
    assert_eq!(second.clone().oneshot(3).await.unwrap().text, "primary:3");
}

#[tokio::test(start_paused = true)]
async fn cache_first_tries_the_cache_before_the_alternate() {
    let primary = Backend::new("primary");
    let alternate = Backend::new("alternate");
    let mut svc = FallbackLayer::builder()
        .alternate(alternate.service())
        .cache(cache(Duration::from_secs(60)))
        .cache_first(true)
        .mark(mark)
        .build()
        .unwrap()
        .layer(primary.service());
    svc.ready().await.unwrap().call(1).await.unwrap();
    primary.set_up(false);
    let cached = svc.ready().await.unwrap().call(1).await.unwrap();
    assert!(matches!(cached.source, Some(FallbackSource::Cache { .. })));
    assert_eq!(alternate.calls(), 0);
    let alt = svc.ready().await.unwrap().call(2).await.unwrap();
    assert_eq!(alt.source, Some(FallbackSource::Alternate));
}

#[tokio::test]
async fn dropping_the_future_during_the_alternate_call_is_clean() {
    let primary = Backend::new("primary");
    primary.set_up(false);
    let (alternate, mut handle) = mock::pair::<u32, Reply>();
    let mut svc = FallbackLayer::builder()
        .alternate(alternate)
        .build()
        .unwrap()
        .layer(primary.service());
    handle.allow(1);
    let mut call = tokio_test::task::spawn(svc.ready().await.unwrap().call(5));
    assert_pending!(call.poll());
    let (request, respond) = handle.next_request().await.unwrap();
    assert_eq!(request, 5);
    drop(call);
    drop(respond);
    handle.allow(1);
    let mut again = tokio_test::task::spawn(svc.ready().await.unwrap().call(6));
    assert_pending!(again.poll());
    assert_request_eq!(handle, 6).send_response(reply("alternate:6"));
    assert_eq!(assert_ready_ok!(again.poll()).text, "alternate:6");
}

#[test]
fn bad_settings_fail_at_build_time() {
    let err = FallbackCache::builder().capacity(0).build().unwrap_err();
    assert_eq!(err.field(), "fallback.cache.capacity");
    assert_eq!(err.value(), "0");
    let err = FallbackCache::builder()
        .max_staleness(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "fallback.cache.max_staleness");
    #[cfg(feature = "http")]
    {
        let err = FallbackCache::http().max_body_bytes(0).build().unwrap_err();
        assert_eq!(err.field(), "fallback.cache.max_body_bytes");
        assert_eq!(
            err.to_string(),
            "invalid setting `fallback.cache.max_body_bytes` = 0: must be at least 1"
        );
    }
    let err = FallbackLayer::builder()
        .static_response(1)
        .on(Trigger::NONE)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "fallback.on");
    let err = FallbackLayer::builder().build().unwrap_err();
    assert_eq!(err.field(), "fallback.sources");
    // Huge staleness limits are accepted, without overflow or panic.
    let cache = FallbackCache::builder()
        .max_staleness(Duration::MAX)
        .build()
        .unwrap();
    assert_eq!(cache.max_staleness(), Duration::MAX);
}
