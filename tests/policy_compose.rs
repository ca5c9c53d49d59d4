//! Fallback and hedging inside one `Policy`, the preset's parts changed one
//! at a time, and layer names that follow the policy's: against a real
//! axum server on 127.0.0.1 driven by reqwest, and on paused time.
#![cfg(all(feature = "reqwest", feature = "axum", feature = "cache"))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http::StatusCode;
use steadfast::BoxError;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::fallback::{FallbackCache, FallbackLayer, FallbackSource};
use steadfast::hedge::HedgeLayer;
use steadfast::observe::Event;
use steadfast::policy::Policy;
use tower::{Layer, ServiceExt, service_fn};

/// A backend on `/users/{id}` that answers 200 while up and 503 while
/// down; on `/slow` only the second request is answered.
#[derive(Clone, Default)]
struct Backend {
    down: Arc<AtomicBool>,
    hits: Arc<AtomicU32>,
    slow_hits: Arc<AtomicU32>,
}

async fn user(
    State(backend): State<Backend>,
    axum::extract::Path(id): axum::extract::Path<u32>,
) -> (StatusCode, String) {
    backend.hits.fetch_add(1, Ordering::SeqCst);
    if backend.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down".to_owned());
    }
    (StatusCode::OK, format!("user {id}"))
}

async fn slow(State(backend): State<Backend>) -> String {
    match backend.slow_hits.fetch_add(1, Ordering::SeqCst) {
        // Never answered: only the hedge can answer (the attempt timeout
        // bounds the test if hedging were broken).
        0 => std::future::pending().await,
        _ => "hedge".to_owned(),
    }
}

async fn serve(backend: Backend) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/users/{id}", get(user))
        .route("/slow", get(slow))
        .with_state(backend);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn get_request(addr: SocketAddr, path: &str) -> reqwest::Request {
    reqwest::Request::new(
        reqwest::Method::GET,
        format!("http://{addr}{path}").parse().unwrap(),
    )
}

type Log = Arc<Mutex<Vec<(String, String)>>>;

/// Records `(kind, layer name)` of every event that names a layer.
fn recorder(log: &Log) -> impl Fn(&Event<'_>) + Send + Sync + 'static {
    let log = Arc::clone(log);
    move |event| {
        let name = match event {
            Event::FallbackServed { name, .. }
            | Event::FallbackMissed { name, .. }
            | Event::HedgeSent { name, .. }
            | Event::HedgeWon { name, .. }
            | Event::RetryScheduled { name, .. }
            | Event::RetryStopped { name, .. }
            | Event::Rejected { name, .. } => name.to_string(),
            _ => String::new(),
        };
        log.lock().unwrap().push((event.kind().to_owned(), name));
    }
}

fn kinds(log: &Log) -> Vec<String> {
    log.lock().unwrap().iter().map(|(k, _)| k.clone()).collect()
}

#[tokio::test]
async fn the_reqwest_preset_with_a_cached_fallback_and_hedging_in_one_policy() {
    let backend = Backend::default();
    let addr = serve(backend.clone()).await;
    let cache = FallbackCache::http().build().unwrap();
    let log = Log::default();
    let policy = Policy::standard_http_client()
        .name("users")
        .total_timeout(Duration::from_secs(5))
        .hedge(HedgeLayer::builder().delay(Duration::from_millis(20)))
        .fallback(FallbackLayer::builder().cache(cache.clone()).reqwest())
        .on_event(recorder(&log))
        .build()
        .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let service = policy.layer(client);

    // Healthy: the live answer, recorded by the cache.
    let response = service
        .clone()
        .oneshot(get_request(addr, "/users/7"))
        .await
        .unwrap();
    assert_eq!(response.extensions().get::<FallbackSource>(), None);
    assert_eq!(response.text().await.unwrap(), "user 7");
    cache.run_pending_tasks();
    assert_eq!(cache.entry_count(), 1);

    // Down: retries spend themselves, then the cached answer, and the
    // policy's listener hears it, under the policy's name.
    backend.down.store(true, Ordering::SeqCst);
    let before = backend.hits.load(Ordering::SeqCst);
    let response = service
        .clone()
        .oneshot(get_request(addr, "/users/7"))
        .await
        .unwrap();
    assert!(backend.hits.load(Ordering::SeqCst) > before + 1, "retried");
    assert!(matches!(
        response.extensions().get::<FallbackSource>(),
        Some(FallbackSource::Cache { .. })
    ));
    assert_eq!(response.text().await.unwrap(), "user 7");
    let served: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(kind, _)| kind == "fallback_served")
        .cloned()
        .collect();
    assert_eq!(
        served,
        [("fallback_served".to_owned(), "fallback".to_owned())],
        "FallbackServed reached the policy's on_event"
    );

    // Slow: the first request is held until the hedge arrives; the hedge's
    // answer wins.
    log.lock().unwrap().clear();
    let response = service
        .clone()
        .oneshot(get_request(addr, "/slow"))
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "hedge");
    assert_eq!(backend.slow_hits.load(Ordering::SeqCst), 2);
    let events = kinds(&log);
    assert!(events.contains(&"hedge_sent".to_owned()), "{events:?}");
    assert!(events.contains(&"hedge_won".to_owned()), "{events:?}");
}

#[tokio::test]
async fn hedges_spend_the_policy_retry_budget() {
    let policy = Policy::standard_http_client()
        .hedge(HedgeLayer::builder().delay(Duration::from_millis(20)))
        .build()
        .unwrap();
    let retry = policy.retry_budget().expect("the preset retries");
    let hedge = policy.hedge().budget().expect("the hedge has a budget");
    // One budget: what the hedge takes, retry no longer has.
    let left = retry.remaining();
    assert!(hedge.try_withdraw());
    assert_eq!(retry.remaining(), left - 1);
}

#[tokio::test]
async fn without_retry_the_hedge_keeps_its_own_budget() {
    let policy = Policy::builder()
        .hedge(HedgeLayer::builder().delay(Duration::from_millis(20)))
        .build()
        .unwrap();
    assert!(policy.retry_budget().is_none());
    assert!(policy.hedge().budget().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_call_ended_by_the_total_deadline_is_answered_by_the_fallback_and_heard() {
    let log = Log::default();
    let policy = Policy::builder()
        .name("slowpoke")
        .total_timeout(Duration::from_millis(300))
        .fallback(FallbackLayer::builder().static_response(0_u32))
        .on_event(recorder(&log))
        .build()
        .unwrap();
    let hang = service_fn(|_: u32| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<u32, BoxError>(1)
    });
    let answer = policy.layer(hang).oneshot(1).await.unwrap();
    assert_eq!(answer, 0);
    let events = kinds(&log);
    assert!(events.contains(&"rejected".to_owned()), "{events:?}");
    assert!(events.contains(&"fallback_served".to_owned()), "{events:?}");
}

#[tokio::test(start_paused = true)]
async fn no_fallback_and_no_hedge_remove_them() {
    let policy = Policy::builder()
        .fallback(FallbackLayer::builder().static_response(0_u32))
        .hedge(HedgeLayer::builder().delay(Duration::from_millis(20)))
        .no_fallback()
        .no_hedge()
        .build()
        .unwrap();
    let failing = service_fn(|_: u32| async { Err::<u32, BoxError>("reset".into()) });
    let err = policy.layer(failing).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "reset");
}

#[test]
fn a_bad_hedge_or_fallback_fails_at_build() {
    let err = Policy::builder()
        .hedge(HedgeLayer::builder().max_hedges(u32::MAX))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "hedge.max_hedges");
    let err = Policy::builder()
        .fallback(FallbackLayer::builder())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "fallback.sources");
}

#[test]
fn a_preset_part_changes_one_setting_and_keeps_the_rest() {
    let preset = Policy::standard_http_client();
    let breaker = preset.circuit_breaker_settings().unwrap().clone();
    let changed = Policy::standard_http_client()
        .circuit_breaker_with(|b| b.failure_rate_threshold(30.0))
        .retry_with(|r| r.max_attempts(2))
        .bulkhead_with(|b| b.max_concurrent(10));
    let policy = changed.build().unwrap();
    // Per host: each host's bulkhead has the changed setting.
    assert_eq!(policy.bulkhead_for("a.example:443").max_concurrent(), 10);
    // The rest of the preset's breaker is kept: its time window still
    // must cover two attempt timeouts.
    let too_short = Policy::standard_http_client()
        .circuit_breaker_with(|b| b.time_window(Duration::from_secs(1), 1))
        .build()
        .unwrap_err();
    assert_eq!(too_short.field(), "circuit_breaker.time_window");
    // The preset itself was not changed by reading it.
    assert_eq!(
        format!("{breaker:?}"),
        format!(
            "{:?}",
            Policy::standard_http_client()
                .circuit_breaker_settings()
                .unwrap()
        )
    );
}

#[test]
fn retry_with_keeps_the_backoff_following_the_total_timeout() {
    // Only the attempts changed: a 1 s total still fits the derived
    // backoff, which an 8 s cap would not.
    Policy::standard_http_client()
        .retry_with(|r| r.max_attempts(3))
        .total_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    // A backoff written out is kept, and checked.
    let err = Policy::standard_http_client()
        .retry_with(|r| r.backoff(steadfast::retry::Backoff::constant(Duration::from_secs(1))))
        .total_timeout(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "retry.backoff");
}

#[test]
fn two_policies_layers_carry_their_own_names() {
    let a = Policy::builder()
        .name("payments")
        .circuit_breaker(CircuitBreakerLayer::builder())
        .build()
        .unwrap();
    let b = Policy::builder()
        .name("search")
        .circuit_breaker(CircuitBreakerLayer::builder())
        .build()
        .unwrap();
    assert_eq!(a.circuit_breaker().unwrap().name(), "payments");
    assert_eq!(b.circuit_breaker().unwrap().name(), "search");
    // The preset's breaker and bulkhead take the preset's name, or the
    // one given.
    let preset = Policy::standard_http_client()
        .name("users")
        .build()
        .unwrap();
    // The preset's breaker and bulkhead are per host: read one host's.
    assert_eq!(
        preset.circuit_breaker_for("users.example:443").name(),
        "users"
    );
    assert_eq!(preset.bulkhead_for("users.example:443").name(), "users");
    let preset = Policy::standard_http_client().build().unwrap();
    assert_eq!(
        preset.circuit_breaker_for("users.example:443").name(),
        "http_client"
    );
    // A name written out is kept.
    let c = Policy::builder()
        .name("search")
        .circuit_breaker(CircuitBreakerLayer::builder().name("search-primary"))
        .build()
        .unwrap();
    assert_eq!(c.circuit_breaker().unwrap().name(), "search-primary");
    // An unnamed policy keeps the layers' own names.
    let d = Policy::builder()
        .circuit_breaker(CircuitBreakerLayer::builder())
        .build()
        .unwrap();
    assert_eq!(d.circuit_breaker().unwrap().name(), "circuit_breaker");
}

#[cfg(feature = "metrics")]
#[test]
fn two_named_policies_export_their_breaker_states_as_two_series() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (a, b) = metrics::with_local_recorder(&recorder, || {
        // The preset's breakers are per host: each host's registers its
        // gauge when first used.
        let build = |name: &'static str| {
            let policy = Policy::standard_http_client().name(name).build().unwrap();
            policy.circuit_breaker_for("api.example:443");
            policy
        };
        (build("payments"), build("search"))
    });
    a.circuit_breaker_for("api.example:443").force_open();
    let open_by_name: Vec<(String, f64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "steadfast_circuit_breaker_state")
        .filter(|(key, ..)| {
            key.key()
                .labels()
                .any(|l| l.key() == "state" && l.value() == "forced_open")
        })
        .map(|(key, _, _, value)| {
            let name = key
                .key()
                .labels()
                .find(|l| l.key() == "name")
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            let value = match value {
                DebugValue::Gauge(v) => v.into_inner(),
                other => panic!("{other:?}"),
            };
            (name, value)
        })
        .collect();
    let mut open_by_name = open_by_name;
    open_by_name.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        open_by_name,
        [("payments".to_owned(), 1.0), ("search".to_owned(), 0.0)],
        "one series per policy: the open breaker does not hide the closed one"
    );
    drop(b);
}

#[cfg(feature = "hyper")]
#[tokio::test]
async fn a_hyper_util_client_under_one_policy_with_fallback_and_hedging() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use steadfast::http::{BufferRequestBodyLayer, ReplayBody};
    use tower::ServiceBuilder;

    type Body = ReplayBody<Full<Bytes>>;
    let backend = Backend::default();
    let addr = serve(backend.clone()).await;
    let log = Log::default();
    let hyper: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    let service = ServiceBuilder::new()
        .layer(BufferRequestBodyLayer::new(1024).unwrap())
        .layer(
            Policy::standard_http_client()
                .total_timeout(Duration::from_secs(5))
                .hedge(HedgeLayer::builder().delay(Duration::from_millis(20)))
                .fallback(
                    FallbackLayer::builder()
                        .cache(FallbackCache::http().build().unwrap())
                        .http_for::<http::Request<Body>, http::Response<Incoming>>(),
                )
                .on_event(recorder(&log))
                .build()
                .unwrap(),
        )
        .service(hyper);
    let get = |path: &str| {
        http::Request::get(format!("http://{addr}{path}"))
            .body(Full::default())
            .unwrap()
    };
    let read = |response: http::Response<_>| async move {
        let source = response.extensions().get::<FallbackSource>().copied();
        let body = BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (String::from_utf8(body.to_vec()).unwrap(), source)
    };

    let (live, source) = read(service.clone().oneshot(get("/users/3")).await.unwrap()).await;
    assert_eq!((live.as_str(), source), ("user 3", None));
    backend.down.store(true, Ordering::SeqCst);
    let (text, source) = read(service.clone().oneshot(get("/users/3")).await.unwrap()).await;
    assert_eq!(text, live);
    assert!(matches!(source, Some(FallbackSource::Cache { .. })));
    assert!(kinds(&log).contains(&"fallback_served".to_owned()));

    let (text, _) = read(service.clone().oneshot(get("/slow")).await.unwrap()).await;
    assert_eq!(text, "hedge");
    assert!(kinds(&log).contains(&"hedge_won".to_owned()));
}

/// A server on `ip` that answers every request with `status`; counts them.
async fn serve_status(ip: &str, status: StatusCode) -> (SocketAddr, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&hits);
    let app = Router::new().route(
        "/{*path}",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { status }
        }),
    );
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

/// Three 503s from one host open its breaker only: the other host is
/// still served.
async fn check_per_host<S>(
    service: S,
    breakers: impl Fn() -> Vec<steadfast::circuit_breaker::CircuitBreakerHandle>,
    key: impl Fn(std::net::SocketAddr) -> String,
) where
    S: tower::Service<
            reqwest::Request,
            Response = reqwest::Response,
            Error = BoxError,
            Future: Send,
        > + Clone
        + Send,
{
    use steadfast::circuit_breaker::State as Breaker;
    use steadfast::error::CircuitOpen;

    let (down, down_hits) = serve_status("127.0.0.1", StatusCode::SERVICE_UNAVAILABLE).await;
    let (up, up_hits) = serve_status("127.0.0.2", StatusCode::OK).await;
    for _ in 0..3 {
        let response = service
            .clone()
            .oneshot(get_request(down, "/a"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    // The failing host's breaker is open: refused without a request.
    let err = service
        .clone()
        .oneshot(get_request(down, "/a"))
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(down_hits.load(Ordering::SeqCst), 3);
    // The other host is served.
    let response = service
        .clone()
        .oneshot(get_request(up, "/b"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(up_hits.load(Ordering::SeqCst), 1);

    let handles = breakers();
    let mut states: Vec<_> = handles
        .iter()
        .map(|h| (h.key().unwrap_or_default().to_owned(), h.state(), h.name()))
        .collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        states,
        [
            (key(down), Breaker::Open, "per_host"),
            (key(up), Breaker::Closed, "per_host"),
        ]
    );
}

#[tokio::test]
async fn a_breaker_per_key_opens_for_the_failing_host_only() {
    use steadfast::policy::PerKey;

    let policy = Policy::standard_http_client()
        .name("per_host")
        .no_retry()
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .consecutive_failures(3)
                .open_duration(Duration::from_secs(60)),
        )
        .circuit_breaker_per(PerKey::new(steadfast::policy::by_host::<reqwest::Request>))
        .build()
        .unwrap();
    // `by_host` keys by the host alone.
    assert!(policy.circuit_breaker().is_none());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let service = policy.layer(client);
    check_per_host(
        service,
        move || policy.circuit_breakers(),
        |addr| addr.ip().to_string(),
    )
    .await;
}

#[tokio::test]
async fn the_preset_breaker_per_host_keeps_the_preset_settings() {
    let policy = Policy::standard_http_client()
        .name("per_host")
        .no_retry()
        .circuit_breaker_with(|b| {
            b.consecutive_failures(3)
                .open_duration(Duration::from_secs(60))
        })
        .circuit_breaker_per_host()
        .build()
        .unwrap();
    // Per host means per host and port.
    assert!(policy.circuit_breaker().is_none());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let service = policy.layer(client);
    check_per_host(
        service,
        move || policy.circuit_breakers(),
        |addr| addr.to_string(),
    )
    .await;
}

#[test]
fn circuit_breaker_sets_one_breaker_again_after_a_keyed_one() {
    use steadfast::policy::PerKey;

    let policy = Policy::builder()
        .circuit_breaker_per(PerKey::new(|request: &u32| *request % 2))
        .circuit_breaker(CircuitBreakerLayer::builder())
        .build()
        .unwrap();
    assert!(policy.circuit_breaker().is_some());
    // A keyed breaker's window is checked against the attempt timeout too.
    let err = Policy::builder()
        .attempt_timeout(Duration::from_secs(10))
        .circuit_breaker_with(|b| b.time_window(Duration::from_secs(5), 5))
        .circuit_breaker_per(PerKey::new(|request: &u32| *request % 2))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit_breaker.time_window");
}

/// A server on `ip` whose requests are held until `release` gives a
/// permit; each says on `entered` that it arrived.
async fn serve_held(
    ip: &str,
    release: Arc<tokio::sync::Semaphore>,
    entered: tokio::sync::mpsc::UnboundedSender<()>,
) -> SocketAddr {
    let app = Router::new().route(
        "/{*path}",
        get(move || {
            let release = Arc::clone(&release);
            let entered = entered.clone();
            async move {
                let _ = entered.send(());
                release.acquire().await.unwrap().forget();
                "released"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// One call in flight fills the first host's bulkhead: the next call to
/// that host is refused without a request, and heard as `rejected`, while
/// the second host is served; the held call then completes.
async fn check_bulkhead_per_host<S>(
    service: S,
    bulkheads: impl Fn() -> Vec<steadfast::bulkhead::BulkheadHandle>,
    log: Log,
) where
    S: tower::Service<
            reqwest::Request,
            Response = reqwest::Response,
            Error = BoxError,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static,
{
    use steadfast::error::BulkheadFull;

    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let busy = serve_held("127.0.0.1", Arc::clone(&release), entered_tx.clone()).await;
    let other = serve_held("127.0.0.2", Arc::clone(&release), entered_tx).await;
    let held = tokio::spawn(service.clone().oneshot(get_request(busy, "/a")));
    entered.recv().await.unwrap();
    // The busy host's one permit is taken: refused, and no request sent.
    let err = service
        .clone()
        .oneshot(get_request(busy, "/a"))
        .await
        .unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");
    assert!(
        entered.try_recv().is_err(),
        "the refused call reached the server"
    );
    // Heard by the policy's listener, under the policy's name.
    let rejected: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(kind, _)| kind == "rejected")
        .cloned()
        .collect();
    assert_eq!(rejected, [("rejected".to_owned(), "per_host".to_owned())]);
    // The other host has its own bulkhead.
    let other_call = tokio::spawn(service.clone().oneshot(get_request(other, "/b")));
    entered.recv().await.unwrap();
    let mut in_flight: Vec<_> = bulkheads()
        .iter()
        .map(|b| (b.in_flight(), b.max_concurrent(), b.name().to_owned()))
        .collect();
    in_flight.sort();
    assert_eq!(
        in_flight,
        [(1, 1, "per_host".to_owned()), (1, 1, "per_host".to_owned())]
    );
    release.add_permits(2);
    let response = other_call.await.unwrap().unwrap();
    assert_eq!(response.text().await.unwrap(), "released");
    let response = held.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Both permits are back.
    assert!(bulkheads().iter().all(|b| b.in_flight() == 0));
    // A call dropped while in flight gives its permit back.
    let dropped = tokio::spawn(service.clone().oneshot(get_request(busy, "/a")));
    entered.recv().await.unwrap();
    assert_eq!(bulkheads().iter().map(|b| b.in_flight()).sum::<usize>(), 1);
    dropped.abort();
    assert!(dropped.await.unwrap_err().is_cancelled());
    assert!(bulkheads().iter().all(|b| b.in_flight() == 0));
}

#[tokio::test]
async fn a_full_bulkhead_per_key_refuses_its_host_only() {
    use steadfast::bulkhead::BulkheadLayer;
    use steadfast::policy::PerKey;

    let log = Log::default();
    let policy = Policy::standard_http_client()
        .name("per_host")
        .no_retry()
        .on_event(recorder(&log))
        .bulkhead(BulkheadLayer::builder().max_concurrent(1))
        .bulkhead_per(PerKey::new(steadfast::policy::by_host::<reqwest::Request>).max_keys(10))
        .build()
        .unwrap();
    assert!(policy.bulkhead().is_none(), "no single bulkhead");
    assert!(policy.bulkheads().is_empty(), "no host called yet");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let service = policy.layer(client);
    check_bulkhead_per_host(service, move || policy.bulkheads(), log).await;
}

#[tokio::test]
async fn the_preset_bulkhead_per_host_keeps_the_preset_settings() {
    let log = Log::default();
    let policy = Policy::standard_http_client()
        .name("per_host")
        .no_retry()
        .on_event(recorder(&log))
        .bulkhead_with(|b| b.max_concurrent(1))
        .bulkhead_per_host()
        .build()
        .unwrap();
    assert!(policy.bulkhead().is_none(), "no single bulkhead");
    assert!(policy.bulkheads().is_empty(), "no host called yet");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let service = policy.layer(client);
    check_bulkhead_per_host(service, move || policy.bulkheads(), log).await;
}

#[test]
fn bulkhead_sets_one_bulkhead_again_after_a_keyed_one() {
    use steadfast::bulkhead::BulkheadLayer;
    use steadfast::policy::PerKey;

    let policy = Policy::builder()
        .bulkhead_per(PerKey::new(|request: &u32| *request % 2))
        .bulkhead(BulkheadLayer::builder().max_concurrent(3))
        .build()
        .unwrap();
    assert_eq!(policy.bulkhead().map(|b| b.max_concurrent()), Some(3));
    assert_eq!(policy.bulkheads().len(), 1);
    let policy = Policy::builder()
        .bulkhead_per(PerKey::new(|request: &u32| *request % 2))
        .no_bulkhead()
        .build()
        .unwrap();
    assert!(policy.bulkhead().is_none());
    assert!(policy.bulkheads().is_empty());
    // A keyed bulkhead's settings are checked at build().
    let err = Policy::builder()
        .bulkhead_with(|b| b.max_concurrent(0))
        .bulkhead_per(PerKey::new(|request: &u32| *request % 2))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "bulkhead.max_concurrent");
    let err = Policy::builder()
        .bulkhead_per(PerKey::new(|request: &u32| *request % 2).max_keys(0))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "bulkhead.max_keys");
}

#[tokio::test]
async fn the_preset_is_per_host_and_its_refusals_and_snapshot_name_the_host() {
    use steadfast::error::BulkheadFull;
    use steadfast::observe::Health;

    // The keys of the bulkhead refusals the policy's listener hears.
    let refused = Arc::new(Mutex::new(Vec::<(String, Option<String>)>::new()));
    let heard = Arc::clone(&refused);
    let policy = Policy::standard_http_client()
        .name("hosts")
        .no_retry()
        .bulkhead_with(|b| b.max_concurrent(1))
        .on_event(move |event| {
            if let Event::Rejected { name, key, .. } = event {
                heard
                    .lock()
                    .unwrap()
                    .push((name.to_string(), key.map(str::to_owned)));
            }
        })
        .build()
        .unwrap();
    let health = Health::new().policy(&policy);
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let busy = serve_held("127.0.0.1", Arc::clone(&release), entered_tx.clone()).await;
    let other = serve_held("127.0.0.2", Arc::clone(&release), entered_tx).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let service = policy.layer(client);

    let held = tokio::spawn(service.clone().oneshot(get_request(busy, "/a")));
    entered.recv().await.unwrap();
    let err = service
        .clone()
        .oneshot(get_request(busy, "/a"))
        .await
        .unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");
    // The refusal names the host it was for.
    assert_eq!(
        *refused.lock().unwrap(),
        [("hosts".to_owned(), Some(busy.to_string()))]
    );
    let other_call = tokio::spawn(service.clone().oneshot(get_request(other, "/b")));
    entered.recv().await.unwrap();

    // The snapshot and the health registry show each host's breaker and
    // bulkhead, with its key; no single one.
    for status in [policy.snapshot(), health.snapshot().policies.remove(0)] {
        assert!(status.circuit_breaker.is_none() && status.bulkhead.is_none());
        let mut bulkheads: Vec<_> = status
            .bulkheads
            .iter()
            .map(|b| (b.key.clone().unwrap(), b.in_flight, b.name.clone()))
            .collect();
        bulkheads.sort();
        assert_eq!(
            bulkheads,
            [
                (busy.to_string(), 1, "hosts".to_owned()),
                (other.to_string(), 1, "hosts".to_owned())
            ]
        );
        let mut breakers: Vec<_> = status
            .circuit_breakers
            .iter()
            .map(|b| (b.key.clone().unwrap(), b.state))
            .collect();
        breakers.sort();
        assert_eq!(
            breakers,
            [(busy.to_string(), "closed"), (other.to_string(), "closed")]
        );
    }
    // One host's open breaker makes the registry unhealthy.
    assert!(health.snapshot().healthy);
    policy.circuit_breaker_for(&busy.to_string()).force_open();
    assert!(!health.snapshot().healthy);

    release.add_permits(2);
    assert_eq!(other_call.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(held.await.unwrap().unwrap().status(), StatusCode::OK);
}
