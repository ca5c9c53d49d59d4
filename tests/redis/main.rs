//! The rate limiter's Redis store against a real `redis-server`, started
//! by each test on a free port of 127.0.0.1.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use steadfast::BoxError;
use steadfast::error::RateLimited;
use steadfast::observe::Event;
use steadfast::rate_limit::{
    ByKey, Consistency, FailMode, Mode, PeriodQuota, Quota, RateLimitLayer, RedisStore, StoreClock,
};
use support::RedisServer;
use tower::{Layer, Service, ServiceExt, service_fn};

macro_rules! server {
    () => {
        match RedisServer::start() {
            Some(server) => server,
            None => return,
        }
    };
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A clock the test moves by hand, in microseconds since the epoch.
#[derive(Clone)]
struct HandClock(Arc<AtomicU64>);

impl HandClock {
    fn at(unix_secs: u64) -> Self {
        Self(Arc::new(AtomicU64::new(unix_secs * 1_000_000)))
    }

    fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_micros() as u64, Ordering::SeqCst);
    }

    fn store_clock(&self) -> StoreClock {
        let now = Arc::clone(&self.0);
        StoreClock::caller(move || UNIX_EPOCH + Duration::from_micros(now.load(Ordering::SeqCst)))
    }
}

/// Days since the epoch of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn unix(y: i64, m: i64, d: i64, hh: u64, mm: u64, ss: u64) -> u64 {
    days_from_civil(y, m, d) as u64 * 86_400 + hh * 3600 + mm * 60 + ss
}

type Svc = steadfast::rate_limit::RateLimit<
    tower::util::ServiceFn<fn(()) -> std::future::Ready<Result<(), BoxError>>>,
>;

fn ok(_: ()) -> std::future::Ready<Result<(), BoxError>> {
    std::future::ready(Ok(()))
}

/// One call: `Ok` or the refusal's retry-after.
async fn call<S>(service: &mut S) -> Result<(), Duration>
where
    S: Service<(), Response = (), Error = BoxError>,
{
    match service.ready().await.unwrap().call(()).await {
        Ok(()) => Ok(()),
        Err(e) => Err(e
            .downcast_ref::<RateLimited>()
            .unwrap_or_else(|| panic!("not a refusal: {e}"))
            .retry_after()),
    }
}

fn ok_keyed(_: String) -> std::future::Ready<Result<(), BoxError>> {
    std::future::ready(Ok(()))
}

fn global(layer: RateLimitLayer) -> Svc {
    layer.layer(service_fn(ok as fn(()) -> _))
}

/// Steps of (advance, calls), run against the in-process limiter on paused
/// time and against Redis on the caller's clock: the same answers.
#[test]
fn gcra_in_redis_answers_as_the_local_limiter_does() {
    let server = server!();
    let quotas = [
        Quota::per_second(10).burst(5),
        Quota::per_minute(60).burst(3),
        Quota::new(4, Duration::from_secs(1)).burst(7),
    ];
    let steps: [(u64, usize); 9] = [
        (0, 9),
        (50, 2),
        (100, 2),
        (250, 3),
        (1_000, 8),
        (10, 1),
        (5_000, 10),
        (999, 2),
        (1, 2),
    ];
    let redis_rt = runtime();
    for (n, quota) in quotas.into_iter().enumerate() {
        let local_rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let mut local = local_rt
            .block_on(async { global(RateLimitLayer::builder().quota(quota).build().unwrap()) });
        let clock = HandClock::at(1_800_000_000);
        let store = RedisStore::builder(server.url())
            .namespace(format!("gcra{n}"))
            .clock(clock.store_clock())
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let mut remote = redis_rt.block_on(async {
            global(
                RateLimitLayer::builder()
                    .quota(quota)
                    .store(store)
                    .build()
                    .unwrap(),
            )
        });
        for (i, &(advance, calls)) in steps.iter().enumerate() {
            let want: Vec<_> = local_rt.block_on(async {
                tokio::time::advance(Duration::from_millis(advance)).await;
                let mut out = Vec::new();
                for _ in 0..calls {
                    out.push(call(&mut local).await);
                }
                out
            });
            clock.advance(Duration::from_millis(advance));
            let got: Vec<_> = redis_rt.block_on(async {
                let mut out = Vec::new();
                for _ in 0..calls {
                    out.push(call(&mut remote).await);
                }
                out
            });
            // Redis counts in microseconds, governor in nanoseconds.
            let micros = |v: &Vec<Result<(), Duration>>| -> Vec<Result<(), u128>> {
                v.iter().map(|r| r.map_err(|d| d.as_micros())).collect()
            };
            assert_eq!(micros(&got), micros(&want), "quota {quota:?}, step {i}");
        }
    }
}

type Fleet = RateLimitLayer<String, ByKey<fn(&String) -> String>>;

#[allow(clippy::ptr_arg)] // The key function takes the key type by reference.
fn client_key(client: &String) -> String {
    client.clone()
}

/// Four replicas, each with its own connection and limiter, one tier.
fn fleet(
    server: &RedisServer,
    namespace: &str,
    consistency: Consistency,
    quota: Quota,
    period: Option<PeriodQuota>,
) -> Vec<Fleet> {
    (0..4)
        .map(|_| {
            let mut store = RedisStore::builder(server.url())
                .namespace(namespace.to_owned())
                .consistency(consistency)
                .timeout(Duration::from_secs(2));
            if let Some(period) = period {
                store = store.quota("free", period);
            }
            RateLimitLayer::builder()
                .tier("free", quota)
                .key(client_key as fn(&String) -> String)
                .store(store.build().unwrap())
                .build()
                .unwrap()
        })
        .collect()
}

/// Sends `per_replica` calls of client `alice` through each replica at
/// once; answers (admitted, round trips).
fn hammer(layers: Vec<Fleet>, per_replica: usize) -> (usize, u64) {
    let rt = runtime();
    rt.block_on(async move {
        let mut tasks = Vec::new();
        let handles: Vec<_> = layers.iter().map(|l| l.handle()).collect();
        for layer in layers {
            tasks.push(async move {
                let service = layer.layer(service_fn(ok_keyed as fn(String) -> _));
                let calls = (0..per_replica).map(|_| service.clone().oneshot("alice".to_owned()));
                let results = futures::future::join_all(calls).await;
                results
                    .into_iter()
                    .filter(|r| match r {
                        Ok(()) => true,
                        Err(e) => {
                            assert!(e.is::<RateLimited>(), "not a refusal: {e}");
                            false
                        }
                    })
                    .count()
            });
        }
        // The replicas run at once, each with its calls in flight together.
        let admitted = futures::future::join_all(tasks).await.into_iter().sum();
        let trips = handles.iter().map(|h| h.store_round_trips()).sum();
        (admitted, trips)
    })
}

// A day's refill interval: nothing refills while the test runs.
const SLOW: Quota = Quota::new(100, Duration::from_secs(86_400));

#[test]
fn four_exact_replicas_admit_the_tier_once() {
    let server = server!();
    let (admitted, trips) = hammer(fleet(&server, "exact", Consistency::Exact, SLOW, None), 100);
    assert_eq!(admitted, 100);
    assert_eq!(trips, 400, "one script call per call");
}

#[test]
fn four_leased_replicas_stay_within_the_quota_with_fewer_round_trips() {
    let server = server!();
    let batch = 10;
    let (admitted, trips) = hammer(
        fleet(&server, "leased", Consistency::Leased { batch }, SLOW, None),
        100,
    );
    // Leases are debited when taken: never above the quota (the documented
    // bound, quota + replicas × batch, holds a fortiori); permits left in
    // other replicas' leases are the only shortfall.
    assert!(admitted <= 100, "admitted {admitted}");
    assert!(admitted >= 100 - 4 * batch as usize, "admitted {admitted}");
    assert!(trips < 400, "{trips} round trips for 400 calls");
}

#[test]
fn period_quotas_hold_across_replicas_in_both_modes() {
    let server = server!();
    let fast = Quota::per_second(10_000);
    let daily = PeriodQuota::per_day(50);
    let (exact, _) = hammer(
        fleet(&server, "pq-exact", Consistency::Exact, fast, Some(daily)),
        40,
    );
    assert_eq!(exact, 50);
    let (leased, _) = hammer(
        fleet(
            &server,
            "pq-leased",
            Consistency::Leased { batch: 16 },
            fast,
            Some(daily),
        ),
        40,
    );
    assert!(leased <= 50, "admitted {leased}");
    // Near the end the batch shrinks to a sixteenth of what is left, so few
    // permits are stranded.
    assert!(leased >= 50 - 4 * 3, "admitted {leased}");
}

#[test]
fn tiers_and_keys_have_separate_allowances() {
    let server = server!();
    let rt = runtime();
    rt.block_on(async {
        let store = RedisStore::builder(server.url())
            .namespace("tiers")
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let layer = RateLimitLayer::builder()
            .tier("free", Quota::new(2, Duration::from_secs(86_400)))
            .tier("gold", Quota::new(5, Duration::from_secs(86_400)))
            .default_tier("free")
            .key(|client: &String| client.clone())
            .tier_of(|c: &String| {
                if c.starts_with("gold_") {
                    "gold"
                } else {
                    "free"
                }
            })
            .store(store)
            .build()
            .unwrap();
        let service = layer.layer(service_fn(|_: String| async { Ok::<_, BoxError>(()) }));
        let admitted = |client: &'static str, n: usize| {
            let service = service.clone();
            async move {
                let mut ok = 0;
                for _ in 0..n {
                    ok += usize::from(service.clone().oneshot(client.to_owned()).await.is_ok());
                }
                ok
            }
        };
        assert_eq!(admitted("free_a", 4).await, 2);
        assert_eq!(admitted("gold_a", 7).await, 5);
        assert_eq!(admitted("free_b", 4).await, 2);
        assert_eq!(admitted("free_a", 1).await, 0);
    });
}

#[test]
fn day_and_month_quotas_roll_over_on_the_callers_clock() {
    let server = server!();
    let rt = runtime();
    rt.block_on(async {
        // A day: three calls, then none until midnight UTC.
        let clock = HandClock::at(unix(2026, 3, 10, 23, 59, 58));
        let store = RedisStore::builder(server.url())
            .namespace("day")
            .clock(clock.store_clock())
            .quota("default", PeriodQuota::per_day(3))
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let layer = RateLimitLayer::builder()
            .quota(Quota::per_second(100))
            .store(store)
            .build()
            .unwrap();
        let handle = layer.handle();
        let mut service = global(layer);
        for _ in 0..3 {
            assert_eq!(call(&mut service).await, Ok(()));
        }
        assert_eq!(call(&mut service).await, Err(Duration::from_secs(2)));
        let usage = handle.usage(&()).await.unwrap();
        assert_eq!((usage.used, usage.limit), (3, 3));
        let health = steadfast::observe::Health::new().rate_limiter("api", handle.clone());
        let snapshot = health.snapshot();
        let seen = &snapshot.rate_limiters[0].store.as_ref().unwrap().usage;
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].tier.as_str(), seen[0].key.as_str()),
            ("default", "*")
        );
        assert_eq!((seen[0].used, seen[0].limit), (3, 3));
        assert_eq!(seen[0].reset_unix, unix(2026, 3, 11, 0, 0, 0));
        assert_eq!(
            usage.reset,
            UNIX_EPOCH + Duration::from_secs(unix(2026, 3, 11, 0, 0, 0))
        );
        clock.advance(Duration::from_secs(2));
        assert_eq!(call(&mut service).await, Ok(()));
        assert_eq!(handle.usage(&()).await.unwrap().used, 1);

        // A month, across February of a leap year and across a new year.
        for (start, reset) in [
            (unix(2028, 2, 29, 23, 0, 0), unix(2028, 3, 1, 0, 0, 0)),
            (unix(2026, 12, 31, 23, 59, 0), unix(2027, 1, 1, 0, 0, 0)),
            (unix(2026, 1, 1, 0, 0, 0), unix(2026, 2, 1, 0, 0, 0)),
        ] {
            let clock = HandClock::at(start);
            let store = RedisStore::builder(server.url())
                .namespace(format!("month{start}"))
                .clock(clock.store_clock())
                .quota("default", PeriodQuota::per_month(2))
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let layer = RateLimitLayer::builder()
                .quota(Quota::per_second(100))
                .store(store)
                .build()
                .unwrap();
            let handle = layer.handle();
            let mut service = global(layer);
            assert_eq!(call(&mut service).await, Ok(()));
            assert_eq!(call(&mut service).await, Ok(()));
            assert_eq!(
                call(&mut service).await,
                Err(Duration::from_secs(reset - start))
            );
            let usage = handle.usage(&()).await.unwrap();
            assert_eq!(usage.reset, UNIX_EPOCH + Duration::from_secs(reset));
            clock.advance(Duration::from_secs(reset - start - 1));
            assert!(
                call(&mut service).await.is_err(),
                "one second before the reset"
            );
            clock.advance(Duration::from_secs(1));
            assert_eq!(call(&mut service).await, Ok(()), "at the reset");
        }
    });
}

#[test]
fn weighted_calls_take_their_cost() {
    let server = server!();
    let rt = runtime();
    rt.block_on(async {
        let clock = HandClock::at(1_800_000_000);
        let store = RedisStore::builder(server.url())
            .namespace("weighted")
            .clock(clock.store_clock())
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let layer = RateLimitLayer::builder()
            .quota(Quota::per_second(10).burst(10))
            .key(|c: &String| c.clone())
            .store(store)
            .build()
            .unwrap();
        let handle = layer.handle();
        let key = "k".to_owned();
        assert!(handle.check_n(&key, 7).await.is_ok());
        let err = handle.check_n(&key, 4).await.unwrap_err();
        // One more call is missing: one emission interval.
        assert_eq!(
            err.downcast_ref::<RateLimited>().unwrap().retry_after(),
            Duration::from_millis(100)
        );
        assert!(handle.check_n(&key, 3).await.is_ok());
        // More than the burst can never pass.
        assert!(handle.check_n(&key, 11).await.is_err());
    });
}

#[test]
fn throttle_reserves_a_slot_in_redis() {
    let server = server!();
    let rt = runtime();
    rt.block_on(async {
        let clock = HandClock::at(1_800_000_000);
        let store = RedisStore::builder(server.url())
            .namespace("throttle")
            .clock(clock.store_clock())
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let layer = RateLimitLayer::builder()
            .quota(Quota::per_second(1000).burst(1))
            .mode(Mode::Throttle {
                max_delay: Duration::from_millis(5),
            })
            .store(store)
            .build()
            .unwrap();
        let mut service = global(layer);
        // The hand clock stands still: the first call passes, the next
        // five wait 1..5 ms for their reserved slots, the seventh is refused.
        for _ in 0..6 {
            assert_eq!(call(&mut service).await, Ok(()));
        }
        assert_eq!(call(&mut service).await, Err(Duration::from_millis(6)));
    });
}

#[test]
fn garbage_under_a_limiters_keys_counts_as_absent() {
    let server = server!();
    let rt = runtime();
    let clock = HandClock::at(unix(2026, 5, 5, 12, 0, 0));
    let day = days_from_civil(2026, 5, 5).to_string();
    let rate_key = "junk:default:*:r";
    let quota_key = format!("junk:default:*:q:{day}");
    let layer = rt.block_on(async {
        let store = RedisStore::builder(server.url())
            .namespace("junk")
            .clock(clock.store_clock())
            .quota("default", PeriodQuota::per_day(1_000))
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        RateLimitLayer::builder()
            .quota(Quota::new(3, Duration::from_secs(86_400)))
            .store(store)
            .build()
            .unwrap()
    });
    let handle = layer.handle();
    let mut service = rt.block_on(async { global(layer) });
    let garbage: [&[&str]; 8] = [
        &["SET", rate_key, "banana"],
        &["SET", rate_key, "1e999"],
        &["SET", rate_key, "-1e999"],
        &["SET", rate_key, "nan"],
        &["SET", rate_key, "99999999999999999999999"],
        &["SET", rate_key, ""],
        &["HSET", rate_key, "field", "value"],
        &["LPUSH", rate_key, "a", "b"],
    ];
    for (i, command) in garbage.iter().enumerate() {
        server.cmd(&["DEL", rate_key]);
        server.cmd(command);
        server.cmd(&["DEL", &quota_key]);
        server.cmd(&["HSET", &quota_key, "x", "y"]);
        let answers: Vec<_> = rt.block_on(async {
            let mut out = Vec::new();
            for _ in 0..4 {
                out.push(call(&mut service).await.is_ok());
            }
            out
        });
        assert_eq!(
            answers,
            [true, true, true, false],
            "garbage {i}: {command:?}"
        );
        assert!(!handle.store_status().unwrap().degraded);
    }
    for junk in ["abc", "-5", "1e999", "nan"] {
        server.cmd(&["DEL", rate_key]);
        server.cmd(&["SET", &quota_key, junk]);
        rt.block_on(async {
            assert_eq!(call(&mut service).await, Ok(()), "quota garbage {junk}");
            assert_eq!(
                handle.usage(&()).await.unwrap().used,
                1,
                "quota garbage {junk}"
            );
        });
    }
}

type Seen = Arc<Mutex<Vec<String>>>;

fn recorder() -> (Seen, impl Fn(&Event<'_>) + Send + Sync + 'static) {
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    (seen, move |event: &Event<'_>| match event {
        Event::StoreDegraded { mode, .. } => sink.lock().unwrap().push(format!("degraded:{mode}")),
        Event::StoreRecovered { .. } => sink.lock().unwrap().push("recovered".into()),
        _ => {}
    })
}

/// Far past any store timeout here: a call that takes this long has
/// stalled. A liveness guard, not a measurement (the store's timeout
/// itself is checked on paused time).
const STALL: Duration = Duration::from_secs(30);

/// One call through `service`, failing the test if it stalls.
async fn call_within_stall<S>(service: &mut S) -> Result<(), Duration>
where
    S: Service<(), Response = (), Error = BoxError>,
{
    tokio::time::timeout(STALL, call(service))
        .await
        .expect("a call stalled with the store down")
}

#[test]
fn redis_stopped_mid_run_degrades_to_local_shares_and_recovers() {
    let mut server = server!();
    let rt = runtime();
    let timeout = Duration::from_millis(100);
    let (seen, listener) = recorder();
    let layer = rt.block_on(async {
        let store = RedisStore::builder(server.url())
            .namespace("outage")
            .on_failure(FailMode::Local { replicas: 2 })
            .timeout(timeout)
            .on_event(listener)
            .build()
            .unwrap();
        RateLimitLayer::builder()
            .quota(Quota::new(20, Duration::from_secs(86_400)))
            .store(store)
            .build()
            .unwrap()
    });
    let handle = layer.handle();
    let mut service = rt.block_on(async { global(layer) });
    rt.block_on(async {
        for _ in 0..3 {
            assert_eq!(call(&mut service).await, Ok(()));
        }
    });
    assert!(seen.lock().unwrap().is_empty());

    server.stop();
    let admitted = rt.block_on(async {
        let mut admitted = 0;
        for _ in 0..30 {
            admitted += usize::from(call_within_stall(&mut service).await.is_ok());
        }
        admitted
    });
    // Each of 2 replicas enforces half the tier: a burst of 10.
    assert_eq!(admitted, 10);
    assert_eq!(*seen.lock().unwrap(), ["degraded:local"]);
    let status = handle.store_status().unwrap();
    assert!(status.degraded);
    assert!(status.failures >= 1);
    let health = steadfast::observe::Health::new().rate_limiter("api", handle.clone());
    let snapshot = health.snapshot();
    let store = snapshot.rate_limiters[0].store.as_ref().unwrap();
    assert!(store.degraded);
    assert_eq!((store.kind, store.on_failure), ("redis", "local"));

    server.restart();
    let recovered = rt.block_on(async {
        for _ in 0..300 {
            let _ = call_within_stall(&mut service).await;
            if !handle.store_status().unwrap().degraded {
                return true;
            }
            // Real time, because the server is real: wait for it to accept.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });
    assert!(recovered, "the store never recovered");
    assert!(
        !health.snapshot().rate_limiters[0]
            .store
            .as_ref()
            .unwrap()
            .degraded
    );
    assert_eq!(*seen.lock().unwrap(), ["degraded:local", "recovered"]);
    // Decided by Redis again: the restarted server is empty.
    let usage = rt.block_on(handle.usage(&())).unwrap();
    assert!(usage.remaining_burst <= 19, "{usage:?}");
}

#[test]
fn fail_open_and_fail_closed_answer_within_the_timeout_without_redis() {
    // A port held for the whole test that never answers: connections are
    // accepted by the kernel and then hang, as with a blackholed server.
    // (A port merely found free could be taken by another test's
    // redis-server meanwhile.)
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blackhole.local_addr().unwrap().port();
    let rt = runtime();
    let timeout = Duration::from_millis(50);
    for (mode, admits) in [(FailMode::FailOpen, true), (FailMode::FailClosed, false)] {
        let (seen, listener) = recorder();
        let mut service = rt.block_on(async {
            let store = RedisStore::builder(format!("redis://127.0.0.1:{port}/"))
                .on_failure(mode)
                .timeout(timeout)
                .on_event(listener)
                .build()
                .unwrap();
            global(
                RateLimitLayer::builder()
                    .quota(Quota::per_second(1).burst(1))
                    .store(store)
                    .build()
                    .unwrap(),
            )
        });
        rt.block_on(async {
            for _ in 0..10 {
                let answer = call_within_stall(&mut service).await;
                assert_eq!(answer.is_ok(), admits, "{mode:?}");
            }
        });
        assert_eq!(
            *seen.lock().unwrap(),
            [format!("degraded:{}", mode.as_str())]
        );
    }
}

#[test]
fn bad_store_settings_are_config_errors() {
    let cases: Vec<(Result<RedisStore, steadfast::ConfigError>, &str)> = vec![
        (
            RedisStore::builder("nope://x").build(),
            "rate_limit.store.url",
        ),
        (
            RedisStore::builder("redis://127.0.0.1/")
                .namespace("")
                .build(),
            "rate_limit.store.namespace",
        ),
        (
            RedisStore::builder("redis://127.0.0.1/")
                .timeout(Duration::ZERO)
                .build(),
            "rate_limit.store.timeout",
        ),
        (
            RedisStore::builder("redis://127.0.0.1/")
                .timeout(Duration::MAX)
                .build(),
            "rate_limit.store.timeout",
        ),
        (
            RedisStore::builder("redis://127.0.0.1/")
                .lease_ttl(Duration::MAX)
                .build(),
            "rate_limit.store.lease_ttl",
        ),
        (
            RedisStore::builder("redis://127.0.0.1/")
                .consistency(Consistency::Leased { batch: 0 })
                .build(),
            "rate_limit.store.batch",
        ),
        (
            RedisStore::builder("redis://127.0.0.1/")
                .on_failure(FailMode::Local { replicas: 0 })
                .build(),
            "rate_limit.store.replicas",
        ),
        (
            RedisStore::builder("redis://127.0.0.1/")
                .quota("free", PeriodQuota::per_day(0))
                .build(),
            "rate_limit.store.quota.limit",
        ),
        (
            RedisStore::builder("redis://127.0.0.1/")
                .quota("free", PeriodQuota::per_month(u64::MAX))
                .build(),
            "rate_limit.store.quota.limit",
        ),
        (
            RedisStore::builder("redis://127.0.0.1/")
                .quota("free", PeriodQuota::per_day(1))
                .quota("free", PeriodQuota::per_month(1))
                .build(),
            "rate_limit.store.quota",
        ),
    ];
    for (result, field) in cases {
        let err = result.expect_err(field);
        assert_eq!(err.field(), field, "{err}");
    }

    let store = || RedisStore::builder("redis://127.0.0.1/").build().unwrap();
    let unknown = RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .store(
            RedisStore::builder("redis://127.0.0.1/")
                .quota("gold", PeriodQuota::per_day(1))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap_err();
    assert_eq!(unknown.field(), "rate_limit.store.quota");
    let early = RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .store(store())
        .key(|c: &String| c.clone())
        .build()
        .unwrap_err();
    assert_eq!(early.field(), "rate_limit.store");
    let slow = RateLimitLayer::builder()
        .quota(Quota::new(1, Duration::MAX))
        .store(store())
        .build()
        .unwrap_err();
    assert_eq!(slow.field(), "rate_limit.quota.period");
    let fast = RateLimitLayer::builder()
        .quota(Quota::new(2_000_000, Duration::from_secs(1)))
        .store(store())
        .build()
        .unwrap_err();
    assert_eq!(fast.field(), "rate_limit.quota.period");
}

#[test]
fn rate_limit_headers_come_from_the_store() {
    use steadfast::http::{ErrorResponseLayer, RateLimitHeadersLayer};
    use tower::ServiceBuilder;

    let server = server!();
    let rt = runtime();
    rt.block_on(async {
        let clock = HandClock::at(unix(2026, 6, 30, 23, 0, 0));
        let store = RedisStore::builder(server.url())
            .namespace("headers")
            .clock(clock.store_clock())
            .quota("default", PeriodQuota::per_month(3))
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let service = ServiceBuilder::new()
            .layer(RateLimitHeadersLayer::new().legacy(true))
            .layer(ErrorResponseLayer::new())
            .layer(
                RateLimitLayer::builder()
                    .quota(Quota::per_minute(60).burst(5))
                    .store(store)
                    .build()
                    .unwrap(),
            )
            .service(service_fn(|_: http::Request<()>| async {
                Ok::<_, BoxError>(http::Response::new(String::new()))
            }));
        let mut seen = Vec::new();
        for _ in 0..4 {
            let response = service
                .clone()
                .oneshot(http::Request::new(()))
                .await
                .unwrap();
            let h = response.headers();
            seen.push((
                response.status().as_u16(),
                h["ratelimit"].to_str().unwrap().to_owned(),
                h["x-ratelimit-remaining"].to_str().unwrap().to_owned(),
                h.get("retry-after").map(|v| v.to_str().unwrap().to_owned()),
            ));
            assert_eq!(
                h["ratelimit-policy"],
                "\"default\";q=5;w=5, \"default-quota\";q=3"
            );
        }
        let month_left = 3600;
        assert_eq!(
            seen,
            [
                (
                    200,
                    format!("\"default\";r=4;t=1, \"default-quota\";r=2;t={month_left}"),
                    "2".into(),
                    None
                ),
                (
                    200,
                    format!("\"default\";r=3;t=2, \"default-quota\";r=1;t={month_left}"),
                    "1".into(),
                    None
                ),
                (
                    200,
                    format!("\"default\";r=2;t=3, \"default-quota\";r=0;t={month_left}"),
                    "0".into(),
                    None
                ),
                (
                    429,
                    format!("\"default\";r=0;t={month_left}, \"default-quota\";r=0;t={month_left}"),
                    "0".into(),
                    Some(month_left.to_string())
                ),
            ]
        );
    });
}

/// The civil date of a day since the epoch.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[test]
fn quota_periods_end_at_the_next_utc_midnight_and_first_of_the_month() {
    let server = server!();
    let rt = runtime();
    let clock = HandClock::at(0);
    let (day, month) = rt.block_on(async {
        let layer = |namespace: &'static str, quota: PeriodQuota| {
            let store = RedisStore::builder(server.url())
                .namespace(namespace)
                .clock(clock.store_clock())
                .quota("default", quota)
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            RateLimitLayer::builder()
                .quota(Quota::per_second(1))
                .store(store)
                .build()
                .unwrap()
        };
        (
            layer("cal-day", PeriodQuota::per_day(1)).handle(),
            layer("cal-month", PeriodQuota::per_month(1)).handle(),
        )
    });
    // Pseudo-random instants from 1970 to 2199, plus the edges of months.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut instants: Vec<u64> = (0..300)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 11) % unix(2200, 1, 1, 0, 0, 0)
        })
        .collect();
    for (y, m) in [
        (2000, 2),
        (2000, 3),
        (2100, 2),
        (2100, 3),
        (2024, 12),
        (2025, 1),
    ] {
        instants.push(unix(y, m, 1, 0, 0, 0));
        instants.push(unix(y, m, 1, 0, 0, 0) - 1);
    }
    rt.block_on(async {
        for secs in instants {
            clock.0.store(secs * 1_000_000 + 999_999, Ordering::SeqCst);
            let days = (secs / 86_400) as i64;
            let (y, m, _) = civil_from_days(days);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let next_month = days_from_civil(ny, nm, 1) as u64 * 86_400;
            let next_day = (secs / 86_400 + 1) * 86_400;
            let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
            assert_eq!(day.usage(&()).await.unwrap().reset, at(next_day), "{secs}");
            assert_eq!(
                month.usage(&()).await.unwrap().reset,
                at(next_month),
                "{secs}"
            );
        }
    });
}
