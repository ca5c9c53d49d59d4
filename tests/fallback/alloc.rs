//! Keying a request with `HttpKey` makes no heap allocation: the default
//! key and a composed one, on `http::Request` and `reqwest::Request`.

use http::HeaderName;
use http::header::{ACCEPT, ACCEPT_LANGUAGE, AUTHORIZATION, COOKIE, HOST, USER_AGENT};
use steadfast::fallback::{CacheSource, FallbackCache, HttpKey};

use crate::counting_alloc::allocations_in;

const HEADERS: [(HeaderName, &str); 6] = [
    (AUTHORIZATION, "Bearer 0123456789abcdef"),
    (COOKIE, "session=a; theme=dark"),
    (HOST, "api.example"),
    (ACCEPT, "application/json"),
    (ACCEPT_LANGUAGE, "en-GB,en;q=0.8"),
    (USER_AGENT, "steadfast-test/1"),
];

fn http_request() -> http::Request<()> {
    let mut builder = http::Request::get("https://api.example/users/7?fields=name&utm_source=mail");
    for (name, value) in HEADERS {
        builder = builder.header(name, value);
    }
    builder.body(()).unwrap()
}

/// How many allocations keying `request` with `cache` makes (after one
/// warm-up call), and whether it may be cached.
fn keying<Req>(cache: &impl CacheSource<Req>, request: &Req) -> (bool, usize) {
    assert!(cache.slot(request).is_some());
    let (slot, allocations) = allocations_in(|| cache.slot(request));
    (slot.is_some(), allocations)
}

#[test]
fn the_default_key_allocates_nothing() {
    // The counter sees allocations: a control.
    let (boxed, allocations) = allocations_in(|| Box::new(7_u64));
    assert_eq!((*boxed, allocations), (7, 1));

    let cache = FallbackCache::http().build().unwrap();
    assert_eq!(keying(&cache, &http_request()), (true, 0));
}

#[test]
fn a_composed_key_allocates_nothing() {
    let key = HttpKey::new()
        .ignore_query_param("utm_source")
        .header(HeaderName::from_static("x-tenant"))
        .header(ACCEPT_LANGUAGE);
    let cache = FallbackCache::http_with(key).build().unwrap();
    assert_eq!(keying(&cache, &http_request()), (true, 0));
    let cache = FallbackCache::http_with(HttpKey::new().ignore_query())
        .build()
        .unwrap();
    assert_eq!(keying(&cache, &http_request()), (true, 0));
}

#[cfg(feature = "reqwest")]
#[test]
fn keying_a_reqwest_request_allocates_nothing() {
    let url = "https://api.example/users/7?fields=name".parse().unwrap();
    let mut request = reqwest::Request::new(reqwest::Method::GET, url);
    for (name, value) in HEADERS {
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    let cache = FallbackCache::http().build().unwrap();
    assert_eq!(keying(&cache, &request), (true, 0));
}
