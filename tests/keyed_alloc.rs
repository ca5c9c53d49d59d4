//! A call through a breaker or a bulkhead per host ([`ByHost`]) to a host
//! seen before makes no heap allocation: the host and port are read from
//! the request in place and looked up without being copied. A host's first
//! call copies its key once.
#![cfg(feature = "http")]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use http::{Request, Response, Uri};
use steadfast::bulkhead::KeyedBulkheadLayer;
use steadfast::circuit_breaker::KeyedCircuitBreakerLayer;
use steadfast::http::HostKey;
use tower::{Service, ServiceBuilder, ServiceExt};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations_in;

/// Always ready; answers at once.
#[derive(Clone, Copy)]
struct Echo;

impl Service<Request<()>> for Echo {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

/// Hosts in mixed case, with and without their default port: two keys.
const URIS: [&str; 4] = [
    "http://API.example/users/1",
    "http://api.example:80/users/2",
    "https://Other.example/orders",
    "https://other.example:443/orders/7",
];

/// `n` requests over [`URIS`], made before counting (a request's own
/// parts are the caller's cost, not the layers').
fn requests(n: usize) -> Vec<Request<()>> {
    (0..n)
        .map(|i| {
            let mut request = Request::new(());
            *request.uri_mut() = Uri::from_static(URIS[i % URIS.len()]);
            request
        })
        .collect()
}

/// Sends every request through `svc` and counts the heap allocations the
/// calls made.
fn allocations_in_calls<S>(svc: &mut S, requests: Vec<Request<()>>) -> usize
where
    S: Service<Request<()>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut total = 0;
        for request in requests {
            let (response, allocations) = allocations_in(|| {
                let mut fut =
                    std::pin::pin!(async { svc.ready().await.unwrap().call(request).await });
                let waker = std::task::Waker::noop();
                match fut.as_mut().poll(&mut Context::from_waker(waker)) {
                    Poll::Ready(result) => result.unwrap(),
                    Poll::Pending => panic!("a ready service answers at the first poll"),
                }
            });
            drop(response);
            total += allocations;
        }
        total
    })
}

#[test]
fn a_call_to_a_known_host_through_a_breaker_per_host_allocates_nothing() {
    let breakers = KeyedCircuitBreakerLayer::builder()
        .by_host()
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(breakers.clone()).service(Echo);
    // The first calls of each host store its key.
    let first = allocations_in_calls(&mut svc, requests(URIS.len()));
    assert!(first > 0, "storing a new host's key allocates");
    assert_eq!(breakers.len(), 2, "case and default ports are normalised");
    assert_eq!(allocations_in_calls(&mut svc, requests(40)), 0);
    // Still the two keys, each the normalised host and port.
    assert_eq!(breakers.len(), 2);
    let mut keys: Vec<_> = breakers.handles().into_iter().map(|(key, _)| key).collect();
    keys.sort_by_key(HostKey::to_string);
    assert_eq!(
        keys,
        [
            HostKey::parse("api.example:80"),
            HostKey::parse("other.example:443")
        ]
    );
}

#[test]
fn a_call_to_a_known_host_through_a_bulkhead_per_host_allocates_nothing() {
    let bulkheads = KeyedBulkheadLayer::by_host()
        .max_concurrent(4)
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(bulkheads.clone()).service(Echo);
    allocations_in_calls(&mut svc, requests(URIS.len()));
    assert_eq!(bulkheads.handle().len(), 2);
    assert_eq!(allocations_in_calls(&mut svc, requests(100)), 0);
}

#[test]
fn a_key_made_by_a_closure_allocates_on_every_call() {
    // The control: a key function that builds a `String` per call is
    // seen by the counter, so the zeros above are the lookup's.
    let breakers = KeyedCircuitBreakerLayer::builder()
        .key(|request: &Request<()>| request.uri().host().unwrap_or_default().to_owned())
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(breakers).service(Echo);
    allocations_in_calls(&mut svc, requests(URIS.len()));
    assert!(allocations_in_calls(&mut svc, requests(100)) >= 100);
}

#[cfg(feature = "rate-limit")]
#[test]
fn a_call_to_a_known_host_through_a_rate_limit_per_host_allocates_nothing() {
    use steadfast::rate_limit::{Quota, RateLimitLayer};

    let limiter = RateLimitLayer::builder()
        .quota(Quota::per_second(1_000_000))
        .by_host()
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(limiter.clone()).service(Echo);
    allocations_in_calls(&mut svc, requests(URIS.len()));
    assert_eq!(limiter.handle().len(), 2);
    assert_eq!(allocations_in_calls(&mut svc, requests(100)), 0);
}
