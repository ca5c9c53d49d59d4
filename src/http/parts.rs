//! What the HTTP layers read from and write to a request, for every
//! request type they support.

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

#[cfg(test)]
mod tests {
    use super::*;

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
