//! The HTTP classifier: status codes, idempotency and transport errors.

use std::any::Any;
use std::error::Error;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};

use super::parts::RequestParts;
use super::retry_after::retry_after;
use crate::classify::{Classify, Verdict};
use crate::error::{BoxError, Elapsed};

/// Judges HTTP attempts; see the [module docs](super#classification).
///
/// ```
/// use std::time::Duration;
/// use steadfast::classify::{Classify, Verdict};
/// use steadfast::http::HttpClassifier;
///
/// let classifier = HttpClassifier::new();
/// let post = http::Request::post("http://api.example/orders").body(()).unwrap();
/// let facts = Classify::<_, http::Response<()>, steadfast::BoxError>::facts(&classifier, &post);
/// assert!(!facts.is_idempotent());
///
/// let busy = http::Response::builder().status(503).header("retry-after", "2").body(()).unwrap();
/// let verdict = Classify::<http::Request<()>, _, steadfast::BoxError>::classify(
///     &classifier,
///     &facts,
///     Ok(&busy),
/// );
/// assert_eq!(verdict, Verdict::transient_after(Duration::from_secs(2)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpClassifier {
    retry_non_idempotent: bool,
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClassifier {
    /// The classifier with its defaults: non-idempotent requests not
    /// retried once sent. `Retry-After` hints are passed on as the server
    /// sent them, never shortened: the retry layer's
    /// [`max_retry_after`](crate::retry::RetryLayerBuilder::max_retry_after)
    /// is the one maximum.
    pub const fn new() -> Self {
        Self {
            retry_non_idempotent: false,
        }
    }

    /// Treats every request as idempotent: transport failures and
    /// gateway errors after the request was sent become transient for any
    /// method. Prefer marking single requests with [`Idempotent`] or an
    /// `Idempotency-Key` header.
    pub const fn retry_non_idempotent(mut self, yes: bool) -> Self {
        self.retry_non_idempotent = yes;
        self
    }

    fn facts_of<R: RequestParts>(&self, request: &R, marked: bool) -> HttpFacts {
        HttpFacts {
            idempotent: self.retry_non_idempotent
                || marked
                || is_idempotent_method(request.method())
                || request.headers().contains_key("idempotency-key"),
        }
    }

    fn judge_status(facts: &HttpFacts, status: StatusCode, headers: &HeaderMap) -> Verdict {
        let code = status.as_u16();
        match code {
            100..=399 => Verdict::Success,
            // The server says it did not act on the request: safe to send
            // again whatever the method.
            408 | 429 | 503 => Verdict::Transient {
                retry_after: retry_after(headers, Duration::MAX),
            },
            // A gateway: the upstream may have acted on the request.
            502 | 504 if facts.idempotent => Verdict::Transient {
                retry_after: retry_after(headers, Duration::MAX),
            },
            400..=499 => Verdict::FunctionalError,
            _ => Verdict::Failure,
        }
    }

    fn judge_error<E: 'static>(facts: &HttpFacts, err: &E) -> Verdict {
        match transport_error(err) {
            Transport::NotSent => Verdict::transient(),
            Transport::TimedOut | Transport::Other if facts.idempotent => Verdict::transient(),
            Transport::TimedOut | Transport::Other => Verdict::Failure,
        }
    }
}

/// Marks an `http::Request` as safe to send twice (put it in the request's
/// extensions): the [`HttpClassifier`] then retries it like a `GET`. For a
/// `reqwest::Request`, send an `Idempotency-Key` header instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Idempotent;

/// What the [`HttpClassifier`] keeps from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpFacts {
    idempotent: bool,
}

impl HttpFacts {
    /// Whether the request may be sent again after it left the client:
    /// an idempotent method (GET, HEAD, OPTIONS, PUT, DELETE, TRACE), an
    /// [`Idempotent`] extension, an `Idempotency-Key` header, or the
    /// classifier's opt-in.
    pub const fn is_idempotent(&self) -> bool {
        self.idempotent
    }
}

/// GET, HEAD, OPTIONS, PUT, DELETE and TRACE (RFC 9110 §9.2.2).
pub fn is_idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

impl<B, B2, E: 'static> Classify<http::Request<B>, http::Response<B2>, E> for HttpClassifier {
    type Facts = HttpFacts;

    #[inline]
    fn facts(&self, request: &http::Request<B>) -> HttpFacts {
        let marked = request.extensions().get::<Idempotent>().is_some();
        self.facts_of(request, marked)
    }

    #[inline]
    fn classify(&self, facts: &HttpFacts, outcome: Result<&http::Response<B2>, &E>) -> Verdict {
        match outcome {
            Ok(response) => Self::judge_status(facts, response.status(), response.headers()),
            Err(err) => Self::judge_error(facts, err),
        }
    }
}

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl<E: 'static> Classify<reqwest::Request, reqwest::Response, E> for HttpClassifier {
    type Facts = HttpFacts;

    #[inline]
    fn facts(&self, request: &reqwest::Request) -> HttpFacts {
        // reqwest keeps its extensions to itself: use `Idempotency-Key`.
        self.facts_of(request, false)
    }

    #[inline]
    fn classify(&self, facts: &HttpFacts, outcome: Result<&reqwest::Response, &E>) -> Verdict {
        match outcome {
            Ok(response) => Self::judge_status(facts, response.status(), response.headers()),
            Err(err) => Self::judge_error(facts, err),
        }
    }
}

/// What a transport error says about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// The request never left the client: connection refused, DNS, TLS.
    NotSent,
    /// The attempt timeout fired; the request may have been sent.
    TimedOut,
    /// Anything else: the request may have reached the server.
    Other,
}

/// Looks through `err` and its sources for what the client knows.
pub(crate) fn transport_error<E: 'static>(err: &E) -> Transport {
    let any: &dyn Any = err;
    let dyn_err: &(dyn Error + 'static) = if let Some(boxed) = any.downcast_ref::<BoxError>() {
        &**boxed
    } else if let Some(io) = any.downcast_ref::<std::io::Error>() {
        io
    } else if let Some(elapsed) = any.downcast_ref::<Elapsed>() {
        elapsed
    } else if let Some(found) = known_client_error(any) {
        found
    } else {
        return Transport::Other;
    };
    let mut next = Some(dyn_err);
    for _ in 0..32 {
        let Some(err) = next else { break };
        if err.is::<Elapsed>() {
            return Transport::TimedOut;
        }
        if never_sent(err) {
            return Transport::NotSent;
        }
        next = err.source();
    }
    Transport::Other
}

fn known_client_error(any: &dyn Any) -> Option<&(dyn Error + 'static)> {
    #[cfg(feature = "reqwest")]
    if let Some(err) = any.downcast_ref::<reqwest::Error>() {
        return Some(err);
    }
    #[cfg(feature = "hyper")]
    if let Some(err) = any.downcast_ref::<hyper_util::client::legacy::Error>() {
        return Some(err);
    }
    let _ = any;
    None
}

fn never_sent(err: &(dyn Error + 'static)) -> bool {
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        return io.kind() == std::io::ErrorKind::ConnectionRefused;
    }
    #[cfg(feature = "reqwest")]
    if let Some(err) = err.downcast_ref::<reqwest::Error>() {
        return err.is_connect();
    }
    #[cfg(feature = "hyper")]
    if let Some(err) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
        return err.is_connect();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::judge;

    fn verdict(method: Method, outcome: Result<http::Response<()>, BoxError>) -> Verdict {
        let c = HttpClassifier::new();
        let req = http::Request::builder()
            .method(method)
            .uri("http://x/")
            .body(())
            .unwrap();
        let facts = Classify::<_, http::Response<()>, BoxError>::facts(&c, &req);
        judge::<_, http::Request<()>, _, _>(&c, &facts, outcome.as_ref())
    }

    fn status(code: u16) -> Result<http::Response<()>, BoxError> {
        Ok(http::Response::builder().status(code).body(()).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn retry_waits_as_long_as_the_hint_asks_up_to_its_own_maximum() {
        use std::sync::{Arc, Mutex};
        use tower::{Layer, ServiceExt, service_fn};

        let calls = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&calls);
        let backend = service_fn(move |_: http::Request<()>| {
            let mut log = log.lock().unwrap();
            log.push(tokio::time::Instant::now());
            let status = if log.len() == 1 { 503 } else { 200 };
            let response = http::Response::builder()
                .status(status)
                .header("retry-after", "400")
                .body(())
                .unwrap();
            async move { Ok::<_, BoxError>(response) }
        });
        let retry = crate::retry::RetryLayer::builder()
            .classifier(HttpClassifier::new())
            .max_retry_after(Duration::from_secs(600))
            .build()
            .unwrap();
        let request = http::Request::get("http://x/").body(()).unwrap();
        let response = retry.layer(backend).oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let calls = calls.lock().unwrap();
        assert_eq!(calls[1] - calls[0], Duration::from_secs(400));
    }

    #[test]
    fn hints_are_passed_on_whole() {
        let busy = |value: &str| {
            Ok(http::Response::builder()
                .status(503)
                .header("retry-after", value)
                .body(())
                .unwrap())
        };
        assert_eq!(
            verdict(Method::GET, busy("400")),
            Verdict::transient_after(Duration::from_secs(400))
        );
        assert_eq!(
            verdict(Method::GET, busy("99999999999999999999999")),
            Verdict::transient_after(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(verdict(Method::GET, status(200)), Verdict::Success);
        assert_eq!(verdict(Method::GET, status(304)), Verdict::Success);
        assert_eq!(verdict(Method::GET, status(404)), Verdict::FunctionalError);
        assert_eq!(verdict(Method::POST, status(422)), Verdict::FunctionalError);
        for code in [408, 429, 502, 503, 504] {
            assert_eq!(
                verdict(Method::GET, status(code)),
                Verdict::transient(),
                "{code}"
            );
        }
        for code in [408, 429, 503] {
            assert_eq!(
                verdict(Method::POST, status(code)),
                Verdict::transient(),
                "{code}"
            );
        }
        assert_eq!(verdict(Method::POST, status(502)), Verdict::Failure);
        assert_eq!(verdict(Method::GET, status(500)), Verdict::Failure);
        assert_eq!(verdict(Method::GET, status(501)), Verdict::Failure);
    }

    #[test]
    fn transport_errors() {
        let refused = || -> BoxError {
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
        };
        let reset =
            || -> BoxError { Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)) };
        let elapsed = || -> BoxError { Box::new(Elapsed::new()) };
        assert_eq!(verdict(Method::POST, Err(refused())), Verdict::transient());
        assert_eq!(verdict(Method::POST, Err(reset())), Verdict::Failure);
        assert_eq!(verdict(Method::PUT, Err(reset())), Verdict::transient());
        assert_eq!(verdict(Method::POST, Err(elapsed())), Verdict::Failure);
        assert_eq!(verdict(Method::GET, Err(elapsed())), Verdict::transient());
    }

    #[test]
    fn opt_in() {
        let c = HttpClassifier::new();
        let mut req = http::Request::post("http://x/").body(()).unwrap();
        let facts = Classify::<_, http::Response<()>, BoxError>::facts(&c, &req);
        assert!(!facts.is_idempotent());
        req.extensions_mut().insert(Idempotent);
        let facts = Classify::<_, http::Response<()>, BoxError>::facts(&c, &req);
        assert!(facts.is_idempotent());
        let req = http::Request::post("http://x/")
            .header("idempotency-key", "k1")
            .body(())
            .unwrap();
        let facts = Classify::<_, http::Response<()>, BoxError>::facts(&c, &req);
        assert!(facts.is_idempotent());
        let c = c.retry_non_idempotent(true);
        let req = http::Request::post("http://x/").body(()).unwrap();
        let facts = Classify::<_, http::Response<()>, BoxError>::facts(&c, &req);
        assert!(facts.is_idempotent());
    }
}
