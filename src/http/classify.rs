//! The HTTP classifier: status codes, idempotency and transport errors.

use std::error::Error;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};

use super::parts::RequestParts;
use super::retry_after::retry_after;
use crate::classify::{Classify, Verdict};
use crate::error::Elapsed;

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
/// let judge = |facts, status: u16| {
///     let answer = http::Response::builder().status(status).header("retry-after", "2").body(()).unwrap();
///     Classify::<http::Request<()>, _, steadfast::BoxError>::classify(&classifier, &facts, Ok(&answer))
/// };
/// // A rate limit refused the POST: it may be sent again, after the hint.
/// assert_eq!(judge(facts, 429), Verdict::transient_after(Duration::from_secs(2)));
/// // A 503 does not say the POST was not processed: not sent again.
/// assert_eq!(judge(facts, 503), Verdict::Failure);
///
/// // With an `Idempotency-Key`, it is retried like a PUT.
/// let keyed = http::Request::post("http://api.example/orders")
///     .header("idempotency-key", "\"a1b2\"")
///     .body(())
///     .unwrap();
/// let facts = Classify::<_, http::Response<()>, steadfast::BoxError>::facts(&classifier, &keyed);
/// assert_eq!(judge(facts, 503), Verdict::transient_after(Duration::from_secs(2)));
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
    /// [`honor_retry_after`](crate::retry::RetryLayerBuilder::honor_retry_after)
    /// is the one maximum.
    pub const fn new() -> Self {
        Self {
            retry_non_idempotent: false,
        }
    }

    /// Treats every request as idempotent: transport failures, 502, 503
    /// and 504 after the request was sent become transient for any method,
    /// and hedging may send copies of any request. Prefer marking single requests with [`Idempotent`] or an
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
        let reached = match status.as_u16() {
            100..=399 => return Verdict::Success,
            // RFC 9110 §15.5.9: the server did not receive the whole
            // request, and the client may repeat it. RFC 6585 §4: the
            // request was refused by a rate limit.
            408 | 429 => Reached::No,
            // RFC 9110 §15.6.3, §15.6.4, §15.6.5: a gateway whose upstream
            // may have acted, a server "unable to handle" it (which says
            // nothing of what was done before it gave up).
            502..=504 => Reached::Maybe,
            400..=499 => return Verdict::FunctionalError,
            _ => return Verdict::Failure,
        };
        if may_send_again(facts, reached) {
            Verdict::Transient {
                retry_after: retry_after(headers, Duration::MAX),
            }
        } else {
            Verdict::Failure
        }
    }

    fn judge_error<E: 'static>(facts: &HttpFacts, err: &E) -> Verdict {
        let reached = match transport_error(err) {
            Transport::NotSent => Reached::No,
            Transport::TimedOut | Transport::Other => Reached::Maybe,
        };
        if may_send_again(facts, reached) {
            Verdict::transient()
        } else {
            Verdict::Failure
        }
    }
}

/// What an attempt's outcome proves about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// Provably not processed: never sent, refused before processing, or
    /// answered with a status that says so.
    No,
    /// It may have reached the application and been acted on.
    Maybe,
}

/// The one rule for sending a request again, by retry or hedging: an
/// idempotent request may always be sent again (RFC 9110 §9.2.2), any other
/// only when it provably did not reach the application. See the
/// [module docs](super#what-is-sent-again).
#[inline]
const fn may_send_again(facts: &HttpFacts, reached: Reached) -> bool {
    facts.idempotent || matches!(reached, Reached::No)
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

    #[inline]
    fn may_overlap(&self, facts: &HttpFacts) -> bool {
        may_send_again(facts, Reached::Maybe)
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

    #[inline]
    fn may_overlap(&self, facts: &HttpFacts) -> bool {
        may_send_again(facts, Reached::Maybe)
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
    let Some(dyn_err) = crate::error::as_error(err) else {
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

/// Whether `err` alone proves the request was not processed; its sources
/// are looked at by the caller.
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
    #[cfg(feature = "h2")]
    if let Some(err) = err.downcast_ref::<h2::Error>() {
        return refused_by_peer(err);
    }
    false
}

/// RFC 9113 §8.7: a stream reset by the server with `REFUSED_STREAM`, or
/// failed by a graceful `GOAWAY` whose last stream id is below its own,
/// was not processed. A `GOAWAY` with an error code is sent to every open
/// stream alike, so it proves nothing.
#[cfg(feature = "h2")]
fn refused_by_peer(err: &h2::Error) -> bool {
    err.is_remote()
        && match err.reason() {
            Some(h2::Reason::REFUSED_STREAM) => true,
            Some(h2::Reason::NO_ERROR) => err.is_go_away(),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::judge;
    use crate::error::BoxError;

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
            .honor_retry_after(Duration::from_secs(600))
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
        // Only answers that say the request was not processed may be
        // followed by another POST.
        for code in [408, 429] {
            assert_eq!(
                verdict(Method::POST, status(code)),
                Verdict::transient(),
                "{code}"
            );
        }
        for code in [500, 502, 503, 504] {
            assert_eq!(
                verdict(Method::POST, status(code)),
                Verdict::Failure,
                "{code}"
            );
            assert_eq!(
                verdict(Method::PATCH, status(code)),
                Verdict::Failure,
                "{code}"
            );
        }
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

    #[test]
    fn a_keyed_post_is_retried_like_a_put() {
        let c = HttpClassifier::new();
        let keyed = http::Request::post("http://x/")
            .header("idempotency-key", "\"8e03978e\"")
            .body(())
            .unwrap();
        let plain = http::Request::post("http://x/").body(()).unwrap();
        let put = http::Request::put("http://x/").body(()).unwrap();
        let judge_all = |req: &http::Request<()>, code: u16| {
            let facts = Classify::<_, http::Response<()>, BoxError>::facts(&c, req);
            judge::<_, http::Request<()>, _, BoxError>(&c, &facts, status(code).as_ref())
        };
        for code in [408, 429, 500, 502, 503, 504] {
            assert_eq!(judge_all(&keyed, code), judge_all(&put, code), "{code}");
        }
        assert_eq!(judge_all(&plain, 503), Verdict::Failure);
        assert_eq!(judge_all(&keyed, 503), Verdict::transient());
    }

    #[test]
    fn only_idempotent_requests_may_overlap() {
        let c = HttpClassifier::new();
        let may = |req: http::Request<()>| {
            let facts = Classify::<_, http::Response<()>, BoxError>::facts(&c, &req);
            Classify::<http::Request<()>, http::Response<()>, BoxError>::may_overlap(&c, &facts)
        };
        assert!(may(http::Request::get("http://x/").body(()).unwrap()));
        assert!(may(http::Request::delete("http://x/").body(()).unwrap()));
        assert!(!may(http::Request::post("http://x/").body(()).unwrap()));
        assert!(!may(http::Request::patch("http://x/").body(()).unwrap()));
        assert!(may(http::Request::post("http://x/")
            .header("idempotency-key", "k")
            .body(())
            .unwrap()));
    }

    /// An HTTP/2 exchange in memory whose server answers every stream
    /// with a reset of `reason`: the client's error for one POST.
    #[cfg(feature = "h2")]
    async fn h2_reset(reason: h2::Reason) -> BoxError {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut conn = h2::server::handshake(server_io).await.unwrap();
            while let Some(Ok((_request, mut respond))) = conn.accept().await {
                respond.send_reset(reason);
            }
        });
        let (send, conn) = h2::client::handshake(client_io).await.unwrap();
        tokio::spawn(conn);
        let mut send = send.ready().await.unwrap();
        let request = http::Request::post("http://x/orders").body(()).unwrap();
        let (response, _) = send.send_request(request, true).unwrap();
        Box::new(response.await.unwrap_err())
    }

    #[cfg(feature = "h2")]
    #[tokio::test]
    async fn a_refused_stream_was_not_processed() {
        let refused = h2_reset(h2::Reason::REFUSED_STREAM).await;
        assert_eq!(verdict(Method::POST, Err(refused)), Verdict::transient());
        let internal = h2_reset(h2::Reason::INTERNAL_ERROR).await;
        assert_eq!(verdict(Method::POST, Err(internal)), Verdict::Failure);
        // A reason made up by the client is no word from the server.
        let local: BoxError = Box::new(h2::Error::from(h2::Reason::REFUSED_STREAM));
        assert_eq!(verdict(Method::POST, Err(local)), Verdict::Failure);
    }

    #[cfg(feature = "h2")]
    #[tokio::test]
    async fn a_graceful_goaway_refuses_the_streams_above_its_last_id() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut conn = h2::server::handshake(server_io).await.unwrap();
            // Answer the first stream, then go away: GOAWAY(last stream
            // id = 1, NO_ERROR).
            let (_request, mut respond) = conn.accept().await.unwrap().unwrap();
            respond
                .send_response(http::Response::new(()), true)
                .unwrap();
            // One poll writes the answer out.
            let _ = futures::poll!(std::pin::pin!(conn.accept()));
            conn.abrupt_shutdown(h2::Reason::NO_ERROR);
            while conn.accept().await.is_some() {}
        });
        let (send, conn) = h2::client::handshake(client_io).await.unwrap();
        tokio::spawn(conn);
        let mut send = send.ready().await.unwrap();
        let first = http::Request::post("http://x/a").body(()).unwrap();
        let (first, _) = send.send_request(first, true).unwrap();
        assert_eq!(first.await.unwrap().status(), 200);
        let second = http::Request::post("http://x/b").body(()).unwrap();
        let err: BoxError = match send.send_request(second, true) {
            Ok((second, _)) => Box::new(second.await.unwrap_err()),
            Err(err) => Box::new(err),
        };
        assert_eq!(verdict(Method::POST, Err(err)), Verdict::transient());
    }
}
