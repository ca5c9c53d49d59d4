//! HTTP responses: the cache key, what may be stored, bodies recorded as
//! they stream, and the source of an answer in its extensions and header.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Extensions, HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::cache::{CacheKey, Kept, KeyHasher, Slot};
#[cfg(feature = "cache")]
use super::cache::{FallbackCache, FallbackCacheBuilder};
#[cfg(doc)]
use super::check::Checked;
use super::check::Unchecked;
use super::source::{FallbackSource, ResponseKind};

/// The headers that identify the caller (or the site), always in the key.
const IDENTITY: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
    header::HOST,
];

/// Keys HTTP requests by method, target URI, and a hash of what identifies
/// the caller: `Authorization`, `Proxy-Authorization`, `Cookie`, `Host`,
/// and the headers named with [`vary_on`](FallbackCacheBuilder::vary_on).
/// It also keeps a digest of every request header, so that a stored
/// response's `Vary` is honoured.
///
/// The URI is compared as RFC 3986 and RFC 9110 §4.2.3 say: the scheme and
/// the host ignore ASCII case, a port that is the scheme's default is the
/// same as none, an empty path is `/`; the userinfo, the path and the
/// query are compared byte for byte, percent-encoding included (`%7E` and
/// `~` are two keys: a miss, never a merge). Header values are compared
/// byte for byte, except `Host`, whose case is ignored. (`http::Uri`'s own
/// `Hash` ignores the case of the userinfo, so keying on it would serve
/// `alice:Secret@` an answer made for `alice:secret@`.)
///
/// Only `GET` and `HEAD` requests are cached (serving a stored answer to a
/// `POST` would pretend a write happened), and never a request that says
/// `Cache-Control: no-store`.
///
/// Works on `http::Request<B>` (any body: hyper, hyper-util, axum) and,
/// with the `reqwest` feature, on `reqwest::Request`, whose URL is already
/// normalised by the `url` crate.
///
/// # Composing a key
///
/// Each method adds to the default key, never replaces it: the identity
/// headers stay in unless one is dropped by name with
/// [`danger_ignore_identity_header`](Self::danger_ignore_identity_header).
///
/// ```
/// # #[cfg(feature = "cache")] {
/// use http::HeaderName;
/// use steadfast::fallback::{FallbackCache, HttpKey};
///
/// let key = HttpKey::new()
///     .ignore_query_param("utm_source")
///     .ignore_query_param("utm_campaign")
///     .header(HeaderName::from_static("x-tenant"));
/// let cache = FallbackCache::http_with(key).max_staleness(std::time::Duration::from_secs(60)).build()?;
/// # let _ = cache;
/// # }
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct HttpKey {
    vary: Vec<HeaderName>,
    /// Identity headers left out of the key, by explicit request.
    dropped: Vec<HeaderName>,
    query: Query,
}

/// What of the query goes into the key.
#[derive(Debug, Clone, Default)]
enum Query {
    /// All of it, byte for byte.
    #[default]
    Keep,
    /// None of it.
    Ignore,
    /// Every `&`-separated pair but those with these names.
    Without(Vec<Box<str>>),
}

impl HttpKey {
    /// The default key: method, target URI, the identity headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves the whole query out of the key: `/a?x=1` and `/a?x=2` share
    /// an answer. Only for resources whose answer does not depend on the
    /// query.
    pub fn ignore_query(mut self) -> Self {
        self.query = Query::Ignore;
        self
    }

    /// Leaves the query parameters named `name` out of the key (say, a
    /// tracking parameter such as `utm_source`): the query is split on `&`,
    /// a pair's name is what is before its first `=`, compared byte for
    /// byte as sent (no percent-decoding); the other pairs stay in the key,
    /// in their order, and empty pairs are skipped (`?a=1&&b` is `?a=1&b`,
    /// and a query left empty is no query).
    /// After [`ignore_query`](Self::ignore_query) it changes nothing.
    pub fn ignore_query_param(mut self, name: impl Into<String>) -> Self {
        let name: Box<str> = name.into().into_boxed_str();
        match &mut self.query {
            Query::Ignore => {}
            Query::Keep => self.query = Query::Without(vec![name]),
            Query::Without(names) => names.push(name),
        }
        self
    }

    /// Also keys entries by the values of header `name` (say,
    /// `Accept-Language`, or a tenant header), so that requests that differ
    /// in it never share an answer, whatever the response's `Vary` says.
    pub fn header(mut self, name: HeaderName) -> Self {
        if !self.vary.contains(&name) {
            self.vary.push(name);
        }
        self
    }

    /// Leaves identity header `name` (`Authorization`,
    /// `Proxy-Authorization`, `Cookie` or `Host`) out of the key, so that
    /// **callers who differ only in it share cached answers**: an answer
    /// made for one caller's credentials is served to another. Only for an
    /// upstream whose answers provably don't depend on the header (say, a
    /// `Cookie` the upstream ignores). Another name has no effect.
    pub fn danger_ignore_identity_header(mut self, name: HeaderName) -> Self {
        if IDENTITY.contains(&name) && !self.dropped.contains(&name) {
            self.dropped.push(name);
        }
        self
    }

    /// The request headers in every key: the identity headers not dropped,
    /// then those named with [`header`](Self::header).
    fn keyed_headers(&self) -> impl Iterator<Item = &HeaderName> {
        IDENTITY
            .iter()
            .filter(|name| !self.dropped.contains(name))
            .chain(&self.vary)
    }

    /// Feeds the key of a request with `method` and `headers` to `hasher`,
    /// the target with `target`; `false` if it may not be cached.
    #[inline]
    fn key_with(
        &self,
        method: &Method,
        headers: &HeaderMap,
        hasher: &mut KeyHasher,
        target: impl FnOnce(&mut KeyHasher),
    ) -> bool {
        if method != Method::GET && method != Method::HEAD {
            return false;
        }
        if CacheControl::of(headers).no_store {
            return false;
        }
        hasher.write(method.as_str().as_bytes());
        target(hasher);
        for name in self.keyed_headers() {
            hasher.write(name.as_str().as_bytes());
            let mut count = 0usize;
            for value in headers.get_all(name) {
                if name == header::HOST {
                    hasher.write_usize(value.len());
                    for byte in value.as_bytes() {
                        hasher.write_u8(byte.to_ascii_lowercase());
                    }
                } else {
                    value.as_bytes().hash(hasher);
                }
                count += 1;
            }
            hasher.write_usize(count);
        }
        hasher.keep_headers(headers);
        true
    }

    /// Feeds the query to `hasher`, as this key says.
    fn hash_query(&self, query: Option<&str>, hasher: &mut KeyHasher) {
        match (&self.query, query) {
            (Query::Ignore, _) | (Query::Keep, None) => hasher.write_u8(0),
            (Query::Keep, Some(query)) => {
                hasher.write_u8(1);
                query.as_bytes().hash(hasher);
            }
            (Query::Without(names), query) => {
                hasher.write_u8(2);
                let mut count = 0usize;
                for pair in query.unwrap_or("").split('&') {
                    let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                    if pair.is_empty() || names.iter().any(|n| **n == *name) {
                        continue;
                    }
                    pair.as_bytes().hash(hasher);
                    count += 1;
                }
                hasher.write_usize(count);
            }
        }
    }
}

impl<B> CacheKey<Request<B>> for HttpKey {
    fn key(&self, request: &Request<B>, hasher: &mut KeyHasher) -> bool {
        self.key_with(request.method(), request.headers(), hasher, |hasher| {
            self.hash_target(request.uri(), hasher);
        })
    }
}

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl CacheKey<reqwest::Request> for HttpKey {
    fn key(&self, request: &reqwest::Request, hasher: &mut KeyHasher) -> bool {
        self.key_with(request.method(), request.headers(), hasher, |hasher| {
            self.hash_url(request.url(), hasher);
        })
    }
}

impl HttpKey {
    /// Feeds the target URI to `hasher`, normalised as RFC 9110 §4.2.3
    /// allows and no further; every part is length-prefixed, so no two
    /// URIs that differ can feed the same bytes.
    fn hash_target(&self, uri: &Uri, hasher: &mut KeyHasher) {
        let scheme = uri.scheme_str();
        match scheme {
            Some(scheme) => {
                hasher.write_u8(1);
                hash_folded(scheme, hasher);
            }
            None => hasher.write_u8(0),
        }
        match uri.authority() {
            Some(authority) => {
                hasher.write_u8(1);
                let all = authority.as_str();
                // The userinfo is all before the last `@`; case-sensitive.
                match all.rfind('@') {
                    Some(at) => {
                        hasher.write_u8(1);
                        all.as_bytes()[..at].hash(hasher);
                    }
                    None => hasher.write_u8(0),
                }
                hash_folded(authority.host(), hasher);
                let default = match scheme {
                    Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
                    Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
                    _ => None,
                };
                // An empty port (`host:`) is the default too.
                hash_port(
                    authority.port_u16().filter(|port| Some(*port) != default),
                    hasher,
                );
            }
            None => hasher.write_u8(0),
        }
        let path = match uri.path() {
            "" => "/",
            path => path,
        };
        path.as_bytes().hash(hasher);
        self.hash_query(uri.query(), hasher);
    }

    /// Feeds a reqwest URL to `hasher`, part by part as
    /// [`hash_target`](Self::hash_target) does; the `url` crate has
    /// already folded the scheme's and the host's case, dropped a default
    /// port and made an empty path `/`.
    #[cfg(feature = "reqwest")]
    fn hash_url(&self, url: &reqwest::Url, hasher: &mut KeyHasher) {
        hasher.write_u8(1);
        hash_folded(url.scheme(), hasher);
        match url.host_str() {
            Some(host) => {
                hasher.write_u8(1);
                let (user, password) = (url.username(), url.password());
                if user.is_empty() && password.is_none() {
                    hasher.write_u8(0);
                } else {
                    // As `user:password` would be fed, length first.
                    hasher.write_u8(1);
                    hasher.write_usize(user.len() + password.map_or(0, |p| p.len() + 1));
                    hasher.write(user.as_bytes());
                    if let Some(password) = password {
                        hasher.write(b":");
                        hasher.write(password.as_bytes());
                    }
                }
                hash_folded(host, hasher);
                hash_port(url.port(), hasher);
            }
            None => hasher.write_u8(0),
        }
        let path = match url.path() {
            "" => "/",
            path => path,
        };
        path.as_bytes().hash(hasher);
        self.hash_query(url.query(), hasher);
    }
}

/// Feeds a port that is not the scheme's default, or its absence.
fn hash_port(port: Option<u16>, hasher: &mut KeyHasher) {
    match port {
        Some(port) => {
            hasher.write_u8(1);
            hasher.write_u16(port);
        }
        None => hasher.write_u8(0),
    }
}

/// Feeds `text` with its ASCII case folded, length first.
fn hash_folded(text: &str, hasher: &mut KeyHasher) {
    hasher.write_usize(text.len());
    for byte in text.as_bytes() {
        hasher.write_u8(byte.to_ascii_lowercase());
    }
}

impl KeyHasher {
    /// Keeps a digest of each of `headers` (its name, case folded, and its
    /// values in order), so that a response whose `Vary` names some of
    /// them is stored for, and served to, only requests with the same
    /// values. A response with `Vary` recorded into a slot whose key kept
    /// no headers is not stored.
    ///
    /// [`HttpKey`] calls this; a custom [`CacheKey`] of HTTP requests
    /// should too.
    pub fn keep_headers(&mut self, headers: &HeaderMap) {
        let seed = &self.seed;
        let kept = headers.keys().map(|name| {
            let mut hasher = seed.clone();
            hasher.write_u8(0x48);
            let mut count = 0usize;
            for value in headers.get_all(name) {
                value.as_bytes().hash(&mut hasher);
                count += 1;
            }
            hasher.write_usize(count);
            (
                super::cache::name_digest(seed, name.as_str().as_bytes()),
                hasher.finish(),
            )
        });
        self.headers = Some(Kept::collect(headers.keys_len(), kept));
    }
}

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
impl FallbackCache<HttpKey> {
    /// A builder for a cache of HTTP responses keyed by [`HttpKey`].
    ///
    /// Defaults: 10,000 entries, answers at most 5 minutes old, bodies up
    /// to 1 MiB; responses marked `Cache-Control: no-store` or `private`,
    /// or that set cookies, not stored. [`Http`](Http#caching-rules) lists
    /// every rule.
    pub fn http() -> FallbackCacheBuilder<HttpKey> {
        FallbackCacheBuilder::with_key(HttpKey::default())
    }

    /// A builder for a cache of HTTP responses keyed by `key`, an
    /// [`HttpKey`] composed from the default (the identity headers stay in
    /// it unless dropped by name); defaults as [`http`](Self::http).
    pub fn http_with(key: HttpKey) -> FallbackCacheBuilder<HttpKey> {
        FallbackCacheBuilder::with_key(key)
    }
}

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
impl FallbackCacheBuilder<HttpKey> {
    /// Also keys entries by the values of header `name` (say,
    /// `Accept-Language`, or a tenant header), so that requests that differ
    /// in it never share an answer, whatever the response's `Vary` says.
    pub fn vary_on(mut self, name: HeaderName) -> Self {
        self.key = self.key.header(name);
        self
    }

    /// Leaves the whole query out of the key; see
    /// [`HttpKey::ignore_query`].
    pub fn ignore_query(mut self) -> Self {
        self.key = self.key.ignore_query();
        self
    }

    /// Leaves the query parameters named `name` out of the key; see
    /// [`HttpKey::ignore_query_param`].
    pub fn ignore_query_param(mut self, name: impl Into<String>) -> Self {
        self.key = self.key.ignore_query_param(name);
        self
    }

    /// Leaves identity header `name` out of the key, so that callers who
    /// differ only in it **share cached answers**; see
    /// [`HttpKey::danger_ignore_identity_header`].
    pub fn danger_ignore_identity_header(mut self, name: HeaderName) -> Self {
        self.key = self.key.danger_ignore_identity_header(name);
        self
    }

    /// The largest body stored, in bytes (default 1 MiB, at least 1). A
    /// larger body is passed on untouched and not stored.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// Whether responses marked `Cache-Control: private` are stored
    /// (default `false`). They are only ever served to a caller with the
    /// same key, credentials included.
    pub fn store_private(mut self, store: bool) -> Self {
        self.store_private = store;
        self
    }

    /// Whether responses marked `Cache-Control: no-store` are stored
    /// (default `false`). A request marked `no-store` is never stored nor
    /// served from the cache, whatever this says.
    pub fn store_no_store(mut self, store: bool) -> Self {
        self.store_no_store = store;
        self
    }

    /// Whether responses with `Set-Cookie` are stored (default `false`, as
    /// nginx's `proxy_cache` and Varnish do). Stored, their cookies are
    /// replayed with the answer, only ever to a caller with the same key:
    /// name the header that tells callers apart with
    /// [`vary_on`](Self::vary_on) if `Authorization` and `Cookie` don't.
    pub fn store_set_cookie(mut self, store: bool) -> Self {
        self.store_set_cookie = store;
        self
    }
}

/// The largest delta-seconds value kept (RFC 9111 §1.2.2); larger ones
/// are clamped to it.
const DELTA_MAX: u64 = 1 << 31;

/// The `Cache-Control` directives the cache obeys, from every line of the
/// field. A line that is not readable text counts as `no-store`.
#[derive(Debug, Default)]
struct CacheControl {
    no_store: bool,
    private: bool,
    no_cache: bool,
    revalidate: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
    stale_if_error: Option<u64>,
}

impl CacheControl {
    fn of(headers: &HeaderMap) -> Self {
        let mut cc = Self::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else {
                tracing::debug!(
                    target: "steadfast::fallback",
                    "unreadable Cache-Control; treated as no-store"
                );
                cc.no_store = true;
                continue;
            };
            for_each_directive(value, |name, argument| cc.directive(name, argument));
        }
        cc
    }

    fn directive(&mut self, name: &str, argument: Option<&str>) {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        // A repeated time keeps the shortest (RFC 9111 §4.2.1: a
        // conflict must not lengthen freshness).
        let seconds = |old: Option<u64>| Some(delta_seconds(argument).min(old.unwrap_or(u64::MAX)));
        if is("no-store") {
            self.no_store = true;
        } else if is("private") {
            self.private = true;
        } else if is("no-cache") {
            self.no_cache = true;
        } else if is("must-revalidate") || is("proxy-revalidate") {
            self.revalidate = true;
        } else if is("max-age") {
            self.max_age = seconds(self.max_age);
        } else if is("s-maxage") {
            self.s_maxage = seconds(self.s_maxage);
        } else if is("stale-if-error") {
            self.stale_if_error = seconds(self.stale_if_error);
        }
    }
}

/// Calls `f` with each directive of a `Cache-Control` line: its name and
/// its argument, unquoted; commas inside quoted strings don't split.
fn for_each_directive<'a>(line: &'a str, mut f: impl FnMut(&'a str, Option<&'a str>)) {
    let bytes = line.as_bytes();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for i in 0..=bytes.len() {
        let byte = bytes.get(i).copied();
        if quoted {
            match byte {
                _ if escaped => escaped = false,
                Some(b'\\') => escaped = true,
                Some(b'"') => quoted = false,
                _ => {}
            }
            if byte.is_some() {
                continue;
            }
        }
        match byte {
            Some(b'"') => quoted = true,
            Some(b',') | None => {
                let directive = line[start..i].trim();
                start = i + 1;
                if directive.is_empty() {
                    continue;
                }
                match directive.split_once('=') {
                    Some((name, argument)) => {
                        let argument = argument.trim();
                        let argument = argument
                            .strip_prefix('"')
                            .and_then(|a| a.strip_suffix('"'))
                            .unwrap_or(argument);
                        f(name.trim(), Some(argument));
                    }
                    None => f(directive, None),
                }
            }
            _ => {}
        }
    }
}

/// A delta-seconds argument (RFC 9111 §1.2.2), clamped to 2^31; a missing
/// or malformed one is 0, which never lengthens what may be served.
fn delta_seconds(argument: Option<&str>) -> u64 {
    let Some(digits) = argument.filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
    else {
        return 0;
    };
    digits
        .bytes()
        .try_fold(0u64, |n, b| {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
        .map_or(DELTA_MAX, |n| n.min(DELTA_MAX))
}

/// The response's `Age`, in seconds: 0 if absent or malformed (with a
/// trace event), the largest if repeated.
fn age_of(headers: &HeaderMap) -> u64 {
    let mut age = 0;
    for value in headers.get_all(header::AGE) {
        match value.to_str().ok().filter(|v| !v.trim().is_empty()) {
            Some(v) if v.trim().bytes().all(|b| b.is_ascii_digit()) => {
                age = age.max(delta_seconds(Some(v.trim())));
            }
            _ => tracing::debug!(target: "steadfast::fallback", "malformed Age ignored"),
        }
    }
    age
}

/// How a response may be stored, or `None` if it may not.
struct Rule {
    /// How long after it is recorded it may be served.
    limit: Duration,
    /// The request headers it varies on (name digests, sorted).
    vary: Vec<u64>,
}

/// Whether a response with `status` and `headers` may be stored, and for
/// how long, given the cache's settings (see the module docs' table).
fn rule(status: StatusCode, headers: &HeaderMap, slot: &Slot) -> Option<Rule> {
    // Only complete answers: a 206 is a part, a 304 says "yours is fine".
    if status == StatusCode::PARTIAL_CONTENT || status == StatusCode::NOT_MODIFIED {
        return None;
    }
    if headers.contains_key(header::SET_COOKIE) && !slot.stores_set_cookie() {
        return None;
    }
    let cc = CacheControl::of(headers);
    if cc.no_store && !slot.stores_no_store() || cc.private && !slot.stores_private() {
        return None;
    }
    // `no-cache` asks that every use be validated with the origin, which a
    // fallback answer never is.
    if cc.no_cache {
        return None;
    }
    let mut vary = Vec::new();
    for value in headers.get_all(header::VARY) {
        let Ok(value) = value.to_str() else {
            return None;
        };
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            // `Vary: *` says no two requests are alike.
            if name == "*" {
                return None;
            }
            vary.push(slot.name_digest(name.as_bytes()));
        }
    }
    vary.sort_unstable();
    vary.dedup();
    // RFC 9111 §4.2.4: stale answers are served only if nothing forbids
    // it; `must-revalidate`, `proxy-revalidate` and, for a shared cache,
    // `s-maxage` do, unless the origin allows it with `stale-if-error`
    // (RFC 5861), which then bounds the staleness.
    let age = Duration::from_secs(age_of(headers));
    let forbids_stale = cc.revalidate || cc.s_maxage.is_some() && cc.stale_if_error.is_none();
    let until = if forbids_stale {
        Some(freshness(&cc, headers))
    } else {
        cc.stale_if_error
            .map(|n| freshness(&cc, headers).saturating_add(Duration::from_secs(n)))
    };
    let limit = match until {
        Some(until) => until.checked_sub(age).filter(|l| !l.is_zero())?,
        None => Duration::MAX,
    };
    Some(Rule { limit, vary })
}

/// The freshness lifetime (RFC 9111 §4.2.1) for a shared cache:
/// `s-maxage`, else `max-age`, else `Expires` − `Date`; else none (no
/// heuristic freshness).
fn freshness(cc: &CacheControl, headers: &HeaderMap) -> Duration {
    if let Some(seconds) = cc.s_maxage.or(cc.max_age) {
        return Duration::from_secs(seconds);
    }
    let date = |name| {
        let value = headers.get(name)?.to_str().ok()?;
        httpdate::parse_http_date(value).ok()
    };
    let Some(expires) = headers.get(header::EXPIRES).map(|_| date(header::EXPIRES)) else {
        return Duration::ZERO;
    };
    // An Expires that can't be read is in the past.
    let Some(expires) = expires else {
        return Duration::ZERO;
    };
    let now = date(header::DATE).unwrap_or_else(std::time::SystemTime::now);
    expires.duration_since(now).unwrap_or(Duration::ZERO)
}

/// The headers a cache must not store (RFC 9111 §3.1): those of the
/// connection, and those of the proxy it forwarded through.
const NOT_STORED: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

/// A copy of `headers` without those a cache must not store, and without
/// those the `Connection` header names.
fn stored_headers(headers: &HeaderMap) -> HeaderMap {
    let mut stored = headers.clone();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for name in value.split(',').map(str::trim) {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                stored.remove(name);
            }
        }
    }
    for name in &NOT_STORED {
        stored.remove(name);
    }
    stored.remove("proxy-authentication-info");
    stored
}

/// HTTP responses: `http::Response<B>` with `B: Body<Data = Bytes>`
/// (hyper's and hyper-util's `Incoming`, axum's `Body`, `Full`), answered
/// as `http::Response<FallbackBody<B>>`, and, with the `reqwest` feature,
/// `reqwest::Response`, answered as `reqwest::Response`.
///
/// `T` is [`Unchecked`] when made by
/// [`http`](super::FallbackLayerBuilder::http), or the [`Checked`]
/// request and response types named with
/// [`reqwest`](super::FallbackLayerBuilder::reqwest) or
/// [`http_for`](super::FallbackLayerBuilder::http_for), which `build()`
/// and `layer()` then check.
///
/// - A success is recorded into the cache as its body is read by the
///   caller: the body passes through untouched, a copy of up to
///   `max_body_bytes` is kept, and the response is stored once the body
///   ends. A body that turns out larger, that fails, or that has trailers
///   is not stored; nor is a body the caller drops before its end.
/// - What is stored, for how long and for whom follows RFC 9111 for a
///   shared cache and RFC 5861's `stale-if-error`, as the table below says.
/// - A fallback answer carries its [`FallbackSource`] in its extensions,
///   and in a header if one was named with
///   [`source_header`](super::FallbackLayerBuilder::source_header).
/// - Static and computed answers are `http::Response<Bytes>`.
///
/// # Caching rules
///
/// The cache serves answers only when the primary call failed
/// (stale-if-error), so it never stores what a shared cache (RFC 9111)
/// must not store, never serves an answer to a request it was not made
/// for, and never serves one staler than its origin allows.
///
/// | rule | what the cache does | source |
/// |---|---|---|
/// | methods | only `GET` and `HEAD` answers are stored, each for its own method | RFC 9110 §9.2.1 |
/// | target URI | scheme and host ignore case; `:80` for `http`, `:443` for `https` and an empty port are the same as none; an empty path is `/`; userinfo, path and query are compared byte for byte (no percent-decoding: `%7E` and `~` are two keys) | RFC 3986 §6.2.2, RFC 9110 §4.2.3 |
/// | caller | `Authorization`, `Proxy-Authorization` and `Cookie` values, byte for byte, and `Host` (case ignored) are in every key, so an answer goes only to the caller it was made for | RFC 9111 §3.5 (a private answer per caller) |
/// | [`vary_on`](FallbackCacheBuilder::vary_on) | the named request headers are in every key | — |
/// | response `Vary` | each answer is stored for, and served to, only requests whose headers it names have the same values (absent counts as a value); `Vary: *` is never stored | RFC 9111 §4.1 |
/// | request `Cache-Control: no-store` | neither stored nor served from the cache | RFC 9111 §5.2.1.5 |
/// | request `no-cache`, `max-age`, `min-fresh` | preferences, not prohibitions: the answer is still served when the primary call failed | RFC 9111 §4.2.4, §5.2.1 |
/// | response `no-store` | not stored, unless [`store_no_store`](FallbackCacheBuilder::store_no_store) | RFC 9111 §5.2.2.5 |
/// | response `private` (also `private="…"`) | not stored, unless [`store_private`](FallbackCacheBuilder::store_private) | RFC 9111 §5.2.2.7 |
/// | response `no-cache` (also `no-cache="…"`) | not stored: it may not be reused without the origin's validation, which a fallback never has | RFC 9111 §5.2.2.4 |
/// | `Set-Cookie` | not stored, unless [`store_set_cookie`](FallbackCacheBuilder::store_set_cookie) | nginx `proxy_cache`, Varnish |
/// | `206 Partial Content`, `304 Not Modified` | not stored: neither is a whole answer | RFC 9111 §3.3, §3.4, §4.3.4 |
/// | response `stale-if-error=N` | served until its age is its freshness lifetime (`s-maxage`, `max-age`, or `Expires` − `Date`) plus N | RFC 5861 §4 |
/// | `must-revalidate`, `proxy-revalidate` | served only while fresh, whatever `stale-if-error` says | RFC 9111 §4.2.4, §5.2.2.2, §5.2.2.8 |
/// | `s-maxage` without `stale-if-error` | served only while fresh (it implies `proxy-revalidate`) | RFC 9111 §5.2.2.10 |
/// | none of these | served up to [`max_staleness`](FallbackCacheBuilder::max_staleness) after it was recorded, the cache's own contract | RFC 9111 §4.2.4 |
/// | every answer | never past `max_staleness` after it was recorded | — |
/// | `Age` | counted in the answer's age; the served answer's `Age` is the origin's plus the time it was held, in seconds (at most 2^31) | RFC 9111 §4.2.3, §5.1 |
/// | connection headers | `Connection` and the fields it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`, `Proxy-Authenticate`, `Proxy-Authentication-Info` are not stored | RFC 9111 §3.1 |
/// | unreadable fields | a `Cache-Control` that is not text counts as `no-store`; a malformed delta-seconds counts as 0; a malformed `Age` is ignored; an unreadable `Vary` is not stored | RFC 9111 §1.2.2, §4.2.1 |
///
/// Seconds past 2^31 count as 2^31 (RFC 9111 §1.2.2). The cache computes
/// no heuristic freshness: an answer without an explicit lifetime has none,
/// which matters only to the rules that speak of freshness.
pub struct Http<T = Unchecked> {
    pub(crate) header: Option<HeaderName>,
    _types: PhantomData<fn() -> T>,
}

impl<T> Http<T> {
    pub(crate) fn with_header(header: Option<HeaderName>) -> Self {
        Self {
            header,
            _types: PhantomData,
        }
    }

    /// Marks a fallback answer's head with its source.
    fn mark_head(
        &self,
        headers: &mut HeaderMap,
        extensions: &mut Extensions,
        source: &FallbackSource,
    ) {
        extensions.insert(*source);
        if let FallbackSource::Cache { age } = source {
            // RFC 9111 §4.2.3: the age the origin reported plus the time
            // the answer was held; 2^31 if it overflows.
            let held = age.as_secs();
            let age = age_of(headers).saturating_add(held).min(DELTA_MAX);
            headers.insert(header::AGE, HeaderValue::from(age));
        }
        if let Some(name) = &self.header {
            let value = HeaderValue::from_static(source.as_str());
            headers.insert(name.clone(), value);
        }
    }
}

impl<T> Default for Http<T> {
    fn default() -> Self {
        Self::with_header(None)
    }
}

impl<T> Clone for Http<T> {
    fn clone(&self) -> Self {
        Self::with_header(self.header.clone())
    }
}

impl<T> fmt::Debug for Http<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("header", &self.header)
            .field("types", &std::any::type_name::<T>())
            .finish()
    }
}

/// Starts recording `response` into `slot`, its head stored with
/// `extensions`: its body is copied as it is read. `Err` gives it back
/// untouched if it may not be stored.
fn start_recording<B: Body<Data = Bytes>>(
    response: Response<B>,
    slot: Slot,
    extensions: Extensions,
) -> Result<Response<FallbackBody<B>>, Response<B>> {
    let cap = slot.max_body_bytes();
    let too_big = usize::try_from(response.body().size_hint().lower()).map_or(true, |n| n > cap);
    if too_big {
        return Err(response);
    }
    let Some(rule) = rule(response.status(), response.headers(), &slot) else {
        return Err(response);
    };
    let (parts, body) = response.into_parts();
    let head = Head {
        status: parts.status,
        version: parts.version,
        headers: stored_headers(&parts.headers),
        extensions,
    };
    let body = if body.is_end_stream() {
        slot.insert_with(head.into_response(Bytes::new()), rule.limit, &rule.vary);
        FallbackBody::new(body)
    } else {
        FallbackBody {
            kind: Kind::Live {
                body,
                recorder: Some(Box::new(Recorder {
                    slot,
                    rule,
                    head,
                    buf: Vec::new(),
                    cap,
                })),
            },
        }
    };
    Ok(Response::from_parts(parts, body))
}

/// A copy of a stored answer's head, with `body`.
fn copy_stored<T>(stored: &Response<Bytes>, body: T) -> Response<T> {
    let mut response = Response::new(body);
    *response.status_mut() = stored.status();
    *response.version_mut() = stored.version();
    *response.headers_mut() = stored.headers().clone();
    response
}

impl<B, T> ResponseKind<Response<B>> for Http<T>
where
    B: Body<Data = Bytes>,
{
    type Response = Response<FallbackBody<B>>;
    type Stored = Response<Bytes>;

    #[inline]
    fn pass(&self, response: Response<B>) -> Self::Response {
        response.map(FallbackBody::new)
    }

    fn record(&self, response: Response<B>, slot: Slot) -> Self::Response {
        start_recording(response, slot, Extensions::new())
            .unwrap_or_else(|response| self.pass(response))
    }

    fn rebuild(&self, stored: &Response<Bytes>) -> Self::Response {
        copy_stored(stored, FallbackBody::from_bytes(stored.body().clone()))
    }

    fn revive(&self, stored: Response<Bytes>) -> Self::Response {
        stored.map(FallbackBody::from_bytes)
    }

    fn mark(&self, response: &mut Self::Response, source: &FallbackSource) {
        // `http::Response` lends its headers and extensions one at a time.
        let mut extensions = std::mem::take(response.extensions_mut());
        self.mark_head(response.headers_mut(), &mut extensions, source);
        *response.extensions_mut() = extensions;
    }
}

/// reqwest's answers: recorded as their body is read (the body is read by
/// the caller, as it streams, with a copy kept up to
/// [`max_body_bytes`](FallbackCacheBuilder::max_body_bytes)), and rebuilt
/// from head and bytes with `From<http::Response<Bytes>>`, their URL
/// included; the same rules as for `http::Response`.
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl<T> ResponseKind<reqwest::Response> for Http<T> {
    type Response = reqwest::Response;
    type Stored = Response<Bytes>;

    #[inline]
    fn pass(&self, response: reqwest::Response) -> reqwest::Response {
        response
    }

    fn record(&self, response: reqwest::Response, slot: Slot) -> reqwest::Response {
        let cap = slot.max_body_bytes();
        let too_big = response
            .content_length()
            .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > cap));
        if too_big || rule(response.status(), response.headers(), &slot).is_none() {
            return response;
        }
        // The URL is kept in the extensions, where reqwest's conversions
        // from `http::Response` look for it.
        let extensions = url_extensions(response.url().clone());
        let response = Response::<reqwest::Body>::from(response);
        match start_recording(response, slot, extensions.clone()) {
            Ok(recording) => {
                let (mut parts, body) = recording.into_parts();
                parts.extensions.extend(extensions);
                reqwest::Response::from(Response::from_parts(parts, reqwest::Body::wrap(body)))
            }
            Err(response) => {
                let (mut parts, body) = response.into_parts();
                parts.extensions.extend(extensions);
                reqwest::Response::from(Response::from_parts(parts, body))
            }
        }
    }

    fn rebuild(&self, stored: &Response<Bytes>) -> reqwest::Response {
        let mut response = copy_stored(stored, stored.body().clone());
        *response.extensions_mut() = stored.extensions().clone();
        reqwest::Response::from(response)
    }

    fn revive(&self, stored: Response<Bytes>) -> reqwest::Response {
        reqwest::Response::from(stored)
    }

    fn mark(&self, response: &mut reqwest::Response, source: &FallbackSource) {
        // reqwest lends its headers and extensions one at a time.
        let mut extensions = std::mem::take(response.extensions_mut());
        self.mark_head(response.headers_mut(), &mut extensions, source);
        *response.extensions_mut() = extensions;
    }
}

/// Extensions that carry `url` as reqwest's response URL.
#[cfg(feature = "reqwest")]
fn url_extensions(url: reqwest::Url) -> Extensions {
    use reqwest::ResponseBuilderExt;
    Response::builder()
        .url(url)
        .body(())
        .map(|response| response.into_parts().0.extensions)
        .unwrap_or_default()
}

/// The head of a response being recorded.
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
}

impl Head {
    fn into_response(self, body: Bytes) -> Response<Bytes> {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers;
        *response.extensions_mut() = self.extensions;
        response
    }
}

/// Keeps a copy of a body as it streams, and stores the response at its
/// end.
struct Recorder {
    slot: Slot,
    rule: Rule,
    head: Head,
    buf: Vec<u8>,
    cap: usize,
}

impl Recorder {
    /// Keeps a copy of `frame`; `false` once the body can't be stored.
    fn keep(&mut self, frame: &Frame<Bytes>) -> bool {
        let Some(data) = frame.data_ref() else {
            return false; // trailers: not stored
        };
        if self.buf.len().saturating_add(data.len()) > self.cap {
            return false;
        }
        self.buf.extend_from_slice(data);
        true
    }

    fn finish(self) {
        let response = self.head.into_response(Bytes::from(self.buf));
        self.slot
            .insert_with(response, self.rule.limit, &self.rule.vary);
    }
}

pin_project! {
    /// The body of an HTTP response through a fallback layer: the primary's
    /// or the alternate's body, passed through, or stored bytes.
    pub struct FallbackBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Live { #[pin] body: B, recorder: Option<Box<Recorder>> },
        Stored { data: Option<Bytes> },
    }
}

impl<B> FallbackBody<B> {
    /// `body`, passed through.
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Live {
                body,
                recorder: None,
            },
        }
    }

    /// A body of `data`, as stored answers have.
    pub fn from_bytes(data: Bytes) -> Self {
        Self {
            kind: Kind::Stored {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    /// Whether the body is stored bytes rather than a live body.
    pub fn is_stored(&self) -> bool {
        matches!(self.kind, Kind::Stored { .. })
    }
}

impl<B: Body<Data = Bytes>> Body for FallbackBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Stored { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Live { mut body, recorder } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                if recorder.is_some() {
                    let end = body.is_end_stream();
                    record_frame::<B>(recorder, frame.as_ref(), end);
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Live { body, .. } => body.is_end_stream(),
            Kind::Stored { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Live { body, .. } => body.size_hint(),
            Kind::Stored { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// Copies a frame into the recorder; stores the response at the body's
/// end, drops the recording if it can't be stored.
#[inline(never)]
fn record_frame<B: Body<Data = Bytes>>(
    recorder: &mut Option<Box<Recorder>>,
    frame: Option<&Result<Frame<Bytes>, B::Error>>,
    end: bool,
) {
    let done = match frame {
        None => true,
        Some(Err(_)) => {
            *recorder = None;
            return;
        }
        Some(Ok(frame)) => {
            if !recorder.as_mut().is_some_and(|r| r.keep(frame)) {
                *recorder = None;
                return;
            }
            end
        }
    };
    if done {
        if let Some(recorder) = recorder.take() {
            recorder.finish();
        }
    }
}

impl<B> fmt::Debug for FallbackBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, recording) = match &self.kind {
            Kind::Live { recorder, .. } => ("live", recorder.is_some()),
            Kind::Stored { .. } => ("stored", false),
        };
        f.debug_struct("FallbackBody")
            .field("kind", &kind)
            .field("recording", &recording)
            .finish()
    }
}

// The helpers build caches, which need the `cache` feature.
#[cfg(all(test, feature = "cache"))]
mod tests {
    use super::*;
    use crate::fallback::CacheSource;
    use proptest::prelude::*;

    fn slot() -> Slot {
        let cache = FallbackCache::http().build().unwrap();
        cache.slot(&Request::new(())).unwrap()
    }

    fn directives(line: &str) -> Vec<(String, Option<String>)> {
        let mut found = Vec::new();
        for_each_directive(line, |name, argument| {
            found.push((name.to_owned(), argument.map(str::to_owned)));
        });
        found
    }

    #[test]
    fn directives_split_on_commas_outside_quotes() {
        let own = |n: &str, a: Option<&str>| (n.to_owned(), a.map(str::to_owned));
        assert_eq!(
            directives(r#" max-age = 5 ,, private="set-cookie, x", x="a\"," ,no-store"#),
            [
                own("max-age", Some("5")),
                own("private", Some("set-cookie, x")),
                own("x", Some(r#"a\","#)),
                own("no-store", None),
            ]
        );
        assert_eq!(directives(r#"a="unterminated, no-store"#).len(), 1);
        assert!(directives(" , ").is_empty());
    }

    #[test]
    fn delta_seconds_are_clamped_and_malformed_ones_are_zero() {
        for (text, seconds) in [
            ("0", 0),
            ("42", 42),
            ("2147483648", DELTA_MAX),
            ("99999999999999999999999", DELTA_MAX),
            ("-1", 0),
            ("1.5", 0),
            ("", 0),
            (" 1", 0),
        ] {
            assert_eq!(delta_seconds(Some(text)), seconds, "{text:?}");
        }
        assert_eq!(delta_seconds(None), 0);
    }

    #[test]
    fn header_names_are_digested_with_their_case_folded() {
        let slot = slot();
        let long = "X-".repeat(40) + "Tenant";
        for name in ["X-Tenant", "x-tenant", long.as_str()] {
            assert_eq!(
                slot.name_digest(name.as_bytes()),
                slot.name_digest(name.to_ascii_lowercase().as_bytes()),
                "{name}"
            );
        }
        assert_ne!(
            slot.name_digest(b"x-tenant"),
            slot.name_digest(b"x-tenants")
        );
    }

    #[test]
    fn unreadable_fields_never_lengthen_what_is_served() {
        let slot = slot();
        let with = |name: HeaderName, value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_bytes(value).unwrap());
            rule(StatusCode::OK, &headers, &slot)
        };
        assert!(with(header::CACHE_CONTROL, b"max-age=60, \xff").is_none());
        assert!(with(header::VARY, b"x-tenant\xff").is_none());
        assert!(with(header::CACHE_CONTROL, b"must-revalidate, max-age=ten").is_none());
        let aged = with(header::AGE, b"\xff").unwrap();
        assert_eq!(aged.limit, Duration::MAX, "a malformed Age is ignored");
    }

    fn digest_with(key: &HttpKey, target: &str, headers: &[(&str, &str)]) -> Option<u128> {
        let cache = FallbackCache::http_with(key.clone()).build().unwrap();
        let digest = |cache: &FallbackCache<HttpKey>| {
            let mut request = Request::get(target);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            cache
                .slot(&request.body(()).unwrap())
                .map(|slot| slot.digest())
        };
        digest(&cache)
    }

    /// Whether two requests share a key, for one cache.
    fn same(key: &HttpKey, a: (&str, &[(&str, &str)]), b: (&str, &[(&str, &str)])) -> bool {
        let cache = FallbackCache::http_with(key.clone()).build().unwrap();
        let digest = |(target, headers): (&str, &[(&str, &str)])| {
            let mut request = Request::get(target);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            cache.slot(&request.body(()).unwrap()).unwrap().digest()
        };
        digest(a) == digest(b)
    }

    #[test]
    fn named_query_parameters_are_left_out_and_the_rest_kept_in_order() {
        let key = HttpKey::new()
            .ignore_query_param("utm_source")
            .ignore_query_param("utm_medium");
        let none: &[(&str, &str)] = &[];
        for (a, b) in [
            ("/p?id=1&utm_source=a", "/p?id=1&utm_source=b"),
            ("/p?utm_medium=x&id=1", "/p?id=1"),
            ("/p?utm_source", "/p"),
            ("/p?", "/p"),
            ("/p?id=1&&utm_source=a", "/p?id=1"),
        ] {
            assert!(same(&key, (a, none), (b, none)), "{a} {b}");
        }
        for (a, b) in [
            ("/p?id=1", "/p?id=2"),
            ("/p?id=1&x=2", "/p?x=2&id=1"),
            ("/p?utm_sourcex=1", "/p"),
            ("/p?%75tm_source=1", "/p"),
            ("/q?id=1", "/p?id=1"),
        ] {
            assert!(!same(&key, (a, none), (b, none)), "{a} {b}");
        }
        let whole = HttpKey::new().ignore_query();
        assert!(same(&whole, ("/p?a=1", none), ("/p", none)));
        assert!(!same(&whole, ("/p?a=1", none), ("/q?a=1", none)));
        // The default key keeps the query byte for byte.
        assert!(!same(&HttpKey::new(), ("/p?", none), ("/p", none)));
    }

    #[test]
    fn identity_headers_stay_in_a_composed_key_unless_dropped_by_name() {
        let alice: &[(&str, &str)] =
            &[("authorization", "a"), ("cookie", "s=1"), ("x-tenant", "t")];
        let bob: &[(&str, &str)] = &[("authorization", "b"), ("cookie", "s=1"), ("x-tenant", "t")];
        let cookie: &[(&str, &str)] =
            &[("authorization", "a"), ("cookie", "s=2"), ("x-tenant", "t")];
        let tenant: &[(&str, &str)] =
            &[("authorization", "a"), ("cookie", "s=1"), ("x-tenant", "u")];
        let key = HttpKey::new()
            .ignore_query()
            .header(HeaderName::from_static("x-tenant"));
        assert!(!same(&key, ("/", alice), ("/", bob)));
        assert!(!same(&key, ("/", alice), ("/", cookie)));
        assert!(!same(&key, ("/", alice), ("/", tenant)));
        let shared = key
            .clone()
            .danger_ignore_identity_header(header::COOKIE)
            .danger_ignore_identity_header(HeaderName::from_static("x-not-identity"));
        assert!(same(&shared, ("/", alice), ("/", cookie)));
        assert!(!same(&shared, ("/", alice), ("/", bob)));
        assert!(!same(&shared, ("/", alice), ("/", tenant)));
        assert!(digest_with(&shared, "/", &[("cache-control", "no-store")]).is_none());
    }

    #[test]
    fn vary_is_honoured_past_the_headers_kept_inline() {
        let cache = FallbackCache::http().build().unwrap();
        let request = |tenant: &str| {
            let mut request = Request::get("/v");
            for i in 0..20 {
                request = request.header(format!("x-filler-{i}"), "1");
            }
            request.header("x-tenant", tenant).body(()).unwrap()
        };
        let vary = [cache.slot(&request("a")).unwrap().name_digest(b"x-tenant")];
        let slot = cache.slot(&request("a")).unwrap();
        assert!(slot.insert_with(7u32, Duration::MAX, &vary));
        assert!(cache.slot(&request("a")).unwrap().lookup().is_some());
        assert!(cache.slot(&request("b")).unwrap().lookup().is_none());
    }

    #[cfg(feature = "reqwest")]
    #[test]
    fn reqwest_urls_are_keyed_as_rfc_9110_compares_them() {
        let cache = FallbackCache::http().build().unwrap();
        let digest = |method: reqwest::Method, url: &str| {
            let request = reqwest::Request::new(method, url.parse().unwrap());
            cache.slot(&request).map(|slot| slot.digest())
        };
        let get = |url: &str| digest(reqwest::Method::GET, url).unwrap();
        assert_eq!(get("HTTP://API.Example:80/a"), get("http://api.example/a"));
        assert_eq!(get("https://h:443"), get("https://h/"));
        assert_ne!(get("http://h:8080/a"), get("http://h/a"));
        assert_ne!(get("http://alice:Secret@h/"), get("http://alice:secret@h/"));
        assert_ne!(get("http://alice@h/"), get("http://h/"));
        assert_ne!(get("http://h/a?x=1"), get("http://h/a?x=2"));
        assert_ne!(get("http://h/%7E"), get("http://h/~"));
        assert!(digest(reqwest::Method::POST, "http://h/").is_none());
        let key = HttpKey::new().ignore_query_param("utm_source");
        let cache = FallbackCache::http_with(key).build().unwrap();
        let digest = |url: &str| {
            let request = reqwest::Request::new(reqwest::Method::GET, url.parse().unwrap());
            cache.slot(&request).unwrap().digest()
        };
        assert_eq!(
            digest("http://h/a?utm_source=x&b=1"),
            digest("http://h/a?b=1")
        );
        assert_ne!(digest("http://h/a?b=1"), digest("http://h/a?b=2"));
    }

    proptest! {
        /// Nothing a peer puts in the headers the rules read can panic;
        /// what is stored may be served for a while, never for no time.
        #[test]
        fn any_headers_give_a_rule_or_none(
            status in 100u16..600,
            lines in proptest::collection::vec(
                (0usize..6, "[ -~]{0,24}|(max-age|s-maxage|stale-if-error)=[0-9]{0,24}"),
                0..6,
            ),
        ) {
            const NAMES: [HeaderName; 6] = [
                header::CACHE_CONTROL,
                header::AGE,
                header::VARY,
                header::EXPIRES,
                header::DATE,
                header::CONNECTION,
            ];
            let mut headers = HeaderMap::new();
            for (name, value) in lines {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.append(NAMES[name].clone(), value);
                }
            }
            let status = StatusCode::from_u16(status).unwrap();
            if let Some(rule) = rule(status, &headers, &slot()) {
                prop_assert!(!rule.limit.is_zero());
                prop_assert!(rule.vary.windows(2).all(|w| w[0] < w[1]));
            }
            let stored = stored_headers(&headers);
            prop_assert!(!stored.contains_key(header::CONNECTION));
        }
    }
}
