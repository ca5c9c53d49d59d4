//! What the HTTP layers read from and write to a request, for every
//! request type they support.

use std::fmt;
use std::hash::{Hash, Hasher};

use http::{HeaderMap, Method};

/// The parts of an HTTP request the layers of this module need.
///
/// Implemented for [`http::Request`] and, with the `reqwest` feature, for
/// `reqwest::Request`, so that the classifier, the route table and the
/// deadline header work with both.
pub trait RequestParts {
    /// The request method.
    fn method(&self) -> &Method;

    /// The host the request goes to, without its port: the URI's host, or
    /// else the `Host` header (as on a server, where the URI is a path).
    fn host(&self) -> Option<&str>;

    /// The port the request goes to: the URI's, else its scheme's default
    /// (80 for `http`, 443 for `https`), else the `Host` header's. `None`
    /// when none of them says.
    fn port(&self) -> Option<u16> {
        None
    }

    /// The path of the request URI.
    fn path(&self) -> &str;

    /// The request headers.
    fn headers(&self) -> &HeaderMap;

    /// The request headers, mutably.
    fn headers_mut(&mut self) -> &mut HeaderMap;
}

impl<B> RequestParts for http::Request<B> {
    fn method(&self) -> &Method {
        self.method()
    }

    fn host(&self) -> Option<&str> {
        self.uri().host().or_else(|| {
            let header = self.headers().get(http::header::HOST)?.to_str().ok()?;
            Some(strip_port(header))
        })
    }

    fn port(&self) -> Option<u16> {
        let uri = self.uri();
        if let Some(port) = uri.port_u16() {
            return Some(port);
        }
        if uri.host().is_some() {
            return default_port(uri.scheme_str());
        }
        let header = self.headers().get(http::header::HOST)?.to_str().ok()?;
        let host = strip_port(header);
        match header[host.len()..].strip_prefix(':') {
            Some(port) => port.parse().ok(),
            None => default_port(uri.scheme_str()),
        }
    }

    fn path(&self) -> &str {
        self.uri().path()
    }

    fn headers(&self) -> &HeaderMap {
        self.headers()
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers_mut()
    }
}

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl RequestParts for reqwest::Request {
    fn method(&self) -> &Method {
        self.method()
    }

    fn host(&self) -> Option<&str> {
        self.url().host_str()
    }

    fn port(&self) -> Option<u16> {
        self.url().port_or_known_default()
    }

    fn path(&self) -> &str {
        self.url().path()
    }

    fn headers(&self) -> &HeaderMap {
        self.headers()
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers_mut()
    }
}

/// The default port of a scheme the HTTP layers know.
fn default_port(scheme: Option<&str>) -> Option<u16> {
    match scheme {
        Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
        Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
        _ => None,
    }
}

/// `host:port` → `host`, keeping IPv6 literals (`[::1]:80` → `[::1]`).
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// The key of a request's authority, for keyed layers: one breaker or
/// bulkhead per host and port.
///
/// `ByHost` reads the host and the port of the request (see
/// [`RequestParts::host`] and [`RequestParts::port`]): the host compared
/// without regard to ASCII case, the scheme's default port made explicit,
/// so that `http://API.example/` and `http://api.example:80/` share one
/// breaker, while `api.example:8080` has its own. A request that names no
/// host has the empty key. It reads the key in place and copies it only
/// the first time a host is seen: a call to a known host allocates nothing.
///
/// It is the key of the HTTP presets' breaker and bulkhead
/// ([`Policy::standard_http_client`](crate::policy::Policy::standard_http_client)),
/// and can key any keyed layer:
///
/// ```
/// use steadfast::circuit_breaker::KeyedCircuitBreakerLayer;
/// use steadfast::http::HostKey;
///
/// // `.by_host()` is `.key(..)` with `ByHost`.
/// let breakers = KeyedCircuitBreakerLayer::builder().by_host().build()?;
/// let a = breakers.get_or_insert(&HostKey::new("API.example", 80));
/// assert_eq!(a.key(), Some("api.example:80"));
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ByHost;

/// A host and port as a keyed layer keeps them: the host in ASCII lower
/// case; shown as `host:port` (or `host` when the port is unknown).
#[derive(Clone, PartialEq, Eq)]
pub struct HostKey {
    host: Box<str>,
    port: Option<u16>,
}

impl HostKey {
    /// The key of `host` (any case) and `port`.
    pub fn new(host: &str, port: impl Into<Option<u16>>) -> Self {
        Self {
            host: host.to_ascii_lowercase().into_boxed_str(),
            port: port.into(),
        }
    }

    /// Reads `host:port`, `host`, or `[v6]:port`.
    pub fn parse(authority: &str) -> Self {
        let host = strip_port(authority);
        let port = authority[host.len()..]
            .strip_prefix(':')
            .and_then(|port| port.parse().ok());
        Self::new(host, port)
    }

    /// The host, in lower case.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, if the request said or implied one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

impl fmt::Debug for HostKey {
    /// As a string is: `"host:port"`, so that events and snapshots show
    /// `host:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl Hash for HostKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_host(&self.host, self.port, state);
    }
}

/// Feeds `host` in ASCII lower case, then the port: the same for a
/// stored [`HostKey`] and for a [`HostRef`] read from a request.
#[inline]
fn hash_host<H: Hasher>(host: &str, port: Option<u16>, state: &mut H) {
    let mut buffer = [0_u8; 64];
    for chunk in host.as_bytes().chunks(buffer.len()) {
        let lower = &mut buffer[..chunk.len()];
        lower.copy_from_slice(chunk);
        lower.make_ascii_lowercase();
        state.write(lower);
    }
    state.write_usize(host.len());
    state.write_u32(port.map_or(u32::MAX, u32::from));
}

/// A request's host and port, borrowed from it: how [`ByHost`] looks up a
/// [`HostKey`] without copying.
#[derive(Debug, Clone, Copy)]
pub struct HostRef<'r> {
    host: &'r str,
    port: Option<u16>,
}

impl Hash for HostRef<'_> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_host(self.host, self.port, state);
    }
}

impl crate::keyed::LookupKey<HostKey> for HostRef<'_> {
    #[inline]
    fn matches(&self, key: &HostKey) -> bool {
        self.port == key.port && self.host.eq_ignore_ascii_case(&key.host)
    }

    fn to_key(&self) -> HostKey {
        HostKey::new(self.host, self.port)
    }
}

impl<Req: RequestParts> crate::keyed::KeyOf<Req> for ByHost {
    type Key = HostKey;
    type Lookup<'r>
        = HostRef<'r>
    where
        Req: 'r;

    #[inline]
    fn key_of<'r>(&self, request: &'r Req) -> HostRef<'r> {
        HostRef {
            host: request.host().unwrap_or_default(),
            port: request.port(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed::{KeyOf, LookupKey};
    use std::hash::BuildHasher;

    fn key_of(req: &http::Request<()>) -> HostRef<'_> {
        ByHost.key_of(req)
    }

    #[test]
    fn by_host_normalises_case_and_default_ports() {
        let hasher = std::collections::hash_map::RandomState::new();
        let stored = HostKey::new("api.example", 80);
        for uri in ["http://API.example/x", "http://api.example:80/y"] {
            let req = http::Request::get(uri).body(()).unwrap();
            let found = key_of(&req);
            assert!(found.matches(&stored), "{uri}");
            assert_eq!(hasher.hash_one(found), hasher.hash_one(&stored), "{uri}");
            assert_eq!(found.to_key(), stored);
        }
        let other = http::Request::get("https://api.example/").body(()).unwrap();
        assert!(!key_of(&other).matches(&stored));
        assert_eq!(key_of(&other).to_key().to_string(), "api.example:443");
        let served = http::Request::get("/x")
            .header("host", "B.example:8080")
            .body(())
            .unwrap();
        assert_eq!(key_of(&served).to_key(), HostKey::parse("b.example:8080"));
        let bare = http::Request::get("/x")
            .header("host", "c.example")
            .body(())
            .unwrap();
        assert_eq!(key_of(&bare).to_key().to_string(), "c.example");
        let none = http::Request::get("/x").body(()).unwrap();
        assert_eq!(key_of(&none).to_key().to_string(), "");
        assert_eq!(HostKey::parse("[::1]:8443").to_string(), "[::1]:8443");
        assert_eq!(format!("{:?}", HostKey::new("a", 1)), "\"a:1\"");
    }

    #[test]
    fn long_hosts_hash_alike_in_any_case() {
        let hasher = std::collections::hash_map::RandomState::new();
        let host = "Very-Long-Sub-Domain-Name.".repeat(9) + "example";
        let stored = HostKey::new(&host, 443);
        let found = HostRef {
            host: &host,
            port: Some(443),
        };
        assert!(found.matches(&stored));
        assert_eq!(hasher.hash_one(found), hasher.hash_one(&stored));
    }

    #[test]
    fn host_from_uri_or_header() {
        let req = http::Request::get("http://a.example:8080/x")
            .body(())
            .unwrap();
        assert_eq!(RequestParts::host(&req), Some("a.example"));
        let req = http::Request::get("/x")
            .header("host", "b.example:80")
            .body(())
            .unwrap();
        assert_eq!(RequestParts::host(&req), Some("b.example"));
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("c.example"), "c.example");
    }
}
