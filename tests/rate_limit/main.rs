//! Rate limiter tests on paused time: reject and throttle modes, keys and
//! tiers, a flood of distinct keys, configuration errors.

mod config;

use std::time::Duration;

use steadfast::BoxError;
use steadfast::error::RateLimited;
use steadfast::rate_limit::{Mode, Quota, RateLimitLayer};
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

fn retry_after(err: &BoxError) -> Duration {
    err.downcast_ref::<RateLimited>()
        .unwrap_or_else(|| panic!("expected RateLimited, got {err}"))
        .retry_after()
}

fn echo() -> impl Service<(String, u32), Response = u32, Error = BoxError, Future: Send> + Clone {
    service_fn(|(_, n): (String, u32)| async move { Ok::<_, BoxError>(n) })
}

async fn send<S>(service: &mut S, key: &str, n: u32) -> Result<u32, BoxError>
where
    S: Service<(String, u32), Response = u32, Error = BoxError>,
{
    service.ready().await?.call((key.to_owned(), n)).await
}

#[tokio::test(start_paused = true)]
async fn reject_mode_allows_the_burst_then_says_when_to_retry() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(1).burst(2))
        .build()
        .expect("valid settings");
    let mut service = layer.layer(echo());

    assert_eq!(send(&mut service, "k", 1).await.expect("burst"), 1);
    assert_eq!(send(&mut service, "k", 2).await.expect("burst"), 2);
    let err = send(&mut service, "k", 3).await.unwrap_err();
    assert_eq!(retry_after(&err), Duration::from_secs(1));

    advance(Duration::from_millis(400)).await;
    let err = send(&mut service, "k", 4).await.unwrap_err();
    assert_eq!(retry_after(&err), Duration::from_millis(600));

    advance(Duration::from_millis(600)).await;
    assert_eq!(send(&mut service, "k", 5).await.expect("refilled"), 5);
    assert!(send(&mut service, "k", 6).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn steady_rate_is_one_call_per_emission_interval() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10).burst(1))
        .build()
        .expect("valid settings");
    let mut service = layer.layer(echo());
    let mut allowed = 0;
    // 10 seconds in 10 ms steps, one attempt per step.
    for step in 0..1_000 {
        if send(&mut service, "k", step).await.is_ok() {
            allowed += 1;
        }
        advance(Duration::from_millis(10)).await;
    }
    assert_eq!(allowed, 100, "10 per second for 10 seconds");
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_allowance() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_minute(1))
        .key(|req: &(String, u32)| req.0.clone())
        .build()
        .expect("valid settings");
    let handle = layer.handle();
    let mut service = layer.layer(echo());

    assert!(send(&mut service, "alice", 1).await.is_ok());
    assert!(send(&mut service, "bob", 2).await.is_ok());
    let err = send(&mut service, "alice", 3).await.unwrap_err();
    assert_eq!(retry_after(&err), Duration::from_secs(60));
    handle.run_pending_tasks();
    assert_eq!(handle.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn tiers_have_their_own_quotas() {
    let layer = RateLimitLayer::builder()
        .tier("free", Quota::per_minute(2))
        .tier("pro", Quota::per_minute(5))
        .default_tier("free")
        .key(|req: &(String, u32)| req.0.clone())
        .tier_of(|key: &String| match key.split_once('_') {
            Some(("pro", _)) => "pro",
            Some(("gold", _)) => "gold", // no such tier: the default applies
            _ => "free",
        })
        .build()
        .expect("valid settings");
    let handle = layer.handle();
    assert_eq!(handle.default_tier(), "free");
    assert_eq!(handle.quota("pro"), Some(Quota::per_minute(5)));
    let mut service = layer.layer(echo());

    let passed = |key: &'static str| {
        let mut service = service.clone();
        async move {
            let mut n = 0;
            while send(&mut service, key, n).await.is_ok() {
                n += 1;
            }
            n
        }
    };
    assert_eq!(passed("free_a").await, 2);
    assert_eq!(passed("pro_a").await, 5);
    assert_eq!(passed("pro_b").await, 5);
    assert_eq!(
        passed("gold_a").await,
        2,
        "an unknown tier falls back to the default"
    );
    assert!(send(&mut service, "free_a", 9).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn every_layered_service_shares_the_limiter() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_hour(1))
        .build()
        .expect("valid settings");
    let mut a = layer.layer(echo());
    let mut b = layer.layer(echo());
    assert!(send(&mut a, "x", 1).await.is_ok());
    assert!(send(&mut b, "x", 2).await.is_err());
    assert!(send(&mut a.clone(), "x", 3).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn throttle_mode_delays_the_call_until_allowed() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(1).burst(1))
        .mode(Mode::Throttle {
            max_delay: Duration::from_secs(2),
        })
        .build()
        .expect("valid settings");
    let (mut service, mut mock) = mock::spawn_layer::<&str, &str, _>(layer);

    assert_ready_ok!(service.poll_ready());
    let mut first = task::spawn(service.call("a"));
    assert_request_eq!(mock, "a").send_response("A");
    assert_eq!(assert_ready_ok!(first.poll()), "A");

    assert_ready_ok!(service.poll_ready());
    let mut second = task::spawn(service.call("b"));
    assert_pending!(second.poll());
    advance(Duration::from_millis(999)).await;
    assert_pending!(second.poll());
    assert!(
        mock.poll_request().is_pending(),
        "not called before its time"
    );
    advance(Duration::from_millis(1)).await;
    assert_pending!(second.poll());
    assert_request_eq!(mock, "b").send_response("B");
    assert_eq!(assert_ready_ok!(second.poll()), "B");
}

#[tokio::test(start_paused = true)]
async fn throttle_mode_rejects_what_would_wait_too_long() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(1).burst(1))
        .mode(Mode::Throttle {
            max_delay: Duration::from_millis(500),
        })
        .build()
        .expect("valid settings");
    let mut service = layer.layer(echo());
    assert!(send(&mut service, "k", 1).await.is_ok());
    let err = send(&mut service, "k", 2).await.unwrap_err();
    assert_eq!(retry_after(&err), Duration::from_secs(1));

    advance(Duration::from_millis(600)).await;
    // 400 ms away now: within max_delay, so the call waits and passes.
    let started = tokio::time::Instant::now();
    assert_eq!(send(&mut service, "k", 3).await.expect("throttled"), 3);
    assert_eq!(started.elapsed(), Duration::from_millis(400));
}

#[tokio::test(start_paused = true)]
async fn throttled_calls_that_lose_the_race_give_up_past_max_delay() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(1).burst(1))
        .mode(Mode::Throttle {
            max_delay: Duration::from_millis(1_500),
        })
        .build()
        .expect("valid settings");
    let service = layer.layer(echo());
    assert!(service.clone().oneshot(("k".into(), 0)).await.is_ok());

    // Three calls all wait for the allowance due in one second. One gets it;
    // the next allowance is two seconds in, beyond their 1.5 s max_delay, so
    // the other two are refused when they find the first one was faster.
    let mut calls = Vec::new();
    for n in 1..=3 {
        calls.push(task::spawn(service.clone().oneshot(("k".into(), n))));
    }
    for call in &mut calls {
        assert_pending!(call.poll());
    }
    advance(Duration::from_secs(1)).await;
    let outcomes: Vec<_> = calls
        .iter_mut()
        .map(|call| match call.poll() {
            std::task::Poll::Ready(Ok(_)) => "served",
            std::task::Poll::Ready(Err(err)) => {
                assert!(err.is::<RateLimited>());
                "refused"
            }
            std::task::Poll::Pending => "waiting",
        })
        .collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "served").count(), 1);
    assert_eq!(outcomes.iter().filter(|o| **o == "refused").count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_100_000_distinct_keys_stays_within_the_bound() {
    const MAX_KEYS: u64 = 1_000;
    let layer = RateLimitLayer::builder()
        .tier("free", Quota::per_minute(10))
        .tier("pro", Quota::per_minute(100))
        .default_tier("free")
        .key(|req: &(u64, u32)| req.0)
        .tier_of(|key: &u64| if key % 10 == 0 { "pro" } else { "free" })
        .max_keys(MAX_KEYS)
        .build()
        .expect("valid settings");
    let handle = layer.handle();
    assert_eq!(handle.max_keys(), 2 * MAX_KEYS);
    let mut service = layer.layer(service_fn(|(_, n): (u64, u32)| async move {
        Ok::<_, BoxError>(n)
    }));

    let mut most_held = 0;
    for key in 0..100_000u64 {
        let n = (key % 1_000) as u32;
        let reply = service.ready().await.expect("ready").call((key, n)).await;
        assert_eq!(reply.expect("a new key has its full allowance"), n);
        if key % 5_000 == 4_999 {
            handle.run_pending_tasks();
            most_held = most_held.max(handle.len());
            assert!(
                handle.len() <= handle.max_keys(),
                "after {} keys the store held {} keys, bound {}",
                key + 1,
                handle.len(),
                handle.max_keys()
            );
        }
    }
    handle.run_pending_tasks();
    assert!(handle.len() <= handle.max_keys());
    assert!(
        most_held > 0 && most_held <= 2 * MAX_KEYS,
        "held at most {most_held}"
    );
}

#[tokio::test(start_paused = true)]
async fn poll_ready_forwards_and_admission_is_in_call() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_hour(1))
        .build()
        .expect("valid settings");
    let (mut service, mut mock) = mock::spawn_layer::<&str, &str, _>(layer);
    mock.allow(0);
    assert_pending!(service.poll_ready(), "the inner service is not ready");
    mock.allow(2);
    assert_ready_ok!(service.poll_ready());
    let mut first = task::spawn(service.call("a"));
    assert_request_eq!(mock, "a").send_response("A");
    assert_ready_ok!(first.poll());
    // Out of allowance, the limiter still reports ready: axum never waits.
    assert_ready_ok!(service.poll_ready());
    let mut second = task::spawn(service.call("b"));
    assert!(assert_ready_err!(second.poll()).is::<RateLimited>());
}

#[tokio::test(start_paused = true)]
async fn throttled_calls_that_lose_the_race_wait_again_within_max_delay() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(1).burst(1))
        .mode(Mode::Throttle {
            max_delay: Duration::from_millis(2_500),
        })
        .build()
        .expect("valid settings");
    let service = layer.layer(echo());
    assert!(service.clone().oneshot(("k".into(), 0)).await.is_ok());
    let mut calls: Vec<_> = (1..=3)
        .map(|n| task::spawn(service.clone().oneshot(("k".into(), n))))
        .collect();
    for call in &mut calls {
        assert_pending!(call.poll());
    }
    let mut served = Vec::new();
    let mut refused = 0;
    for _ in 0..3 {
        advance(Duration::from_secs(1)).await;
        for call in &mut calls {
            if !call.is_woken() {
                continue;
            }
            match call.poll() {
                std::task::Poll::Ready(Ok(n)) => served.push((n, tokio::time::Instant::now())),
                std::task::Poll::Ready(Err(err)) => {
                    assert!(err.is::<RateLimited>());
                    refused += 1;
                }
                std::task::Poll::Pending => {}
            }
        }
    }
    // One call at 1 s, one at 2 s (within 2.5 s), the third would be at 3 s.
    assert_eq!(served.len(), 2, "{served:?}");
    assert_eq!(refused, 1);
    assert_eq!(served[1].1 - served[0].1, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_full_registry_of_held_keys_still_limits_a_new_key() {
    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(1).burst(1))
        .mode(Mode::Throttle {
            max_delay: Duration::from_secs(10),
        })
        .max_keys(1)
        .key(|(key, _): &(String, u32)| key.clone())
        .build()
        .expect("valid settings");
    let mut service = layer.layer(echo());
    assert_eq!(send(&mut service, "a", 1).await.unwrap(), 1);
    // A throttled call holds key a's limiter: the one place is held.
    let mut held = task::spawn(service.ready().await.unwrap().call(("a".into(), 2)));
    assert_pending!(held.poll());
    // Key b finds no room: it shares the overflow limiter, which still
    // counts its calls instead of granting a fresh allowance each time.
    assert_eq!(send(&mut service, "b", 3).await.unwrap(), 3);
    let mut second = task::spawn(service.ready().await.unwrap().call(("b".into(), 4)));
    assert_pending!(second.poll());
    advance(Duration::from_secs(1)).await;
    assert_eq!(assert_ready_ok!(second.poll()), 4);
    assert_eq!(assert_ready_ok!(held.poll()), 2);
}
