//! The gRPC classifier: `grpc-status` from headers or trailers, pushback,
//! transport errors.

use std::time::Duration;

use http::{Extensions, HeaderMap};

use super::pushback::{Pushback, pushback_in};
use super::status::{Code, status_in};
use super::trailers::GrpcTrailers;
use crate::classify::{Classify, Verdict};
use crate::http::classify::{Transport, transport_error};

/// Judges gRPC attempts by their status code; see the
/// [module docs](super#classification) for the table.
///
/// ```
/// use std::time::Duration;
/// use steadfast::classify::{Classify, Verdict};
/// use steadfast::grpc::{Code, GrpcClassifier};
///
/// let classifier = GrpcClassifier::new();
/// let busy = http::Response::builder()
///     .header("grpc-status", "8") // RESOURCE_EXHAUSTED, trailers-only
///     .header("grpc-retry-pushback-ms", "1500")
///     .body(())
///     .unwrap();
/// let verdict = Classify::<http::Request<()>, _, steadfast::BoxError>::classify(&classifier, &(), Ok(&busy));
/// assert_eq!(verdict, Verdict::transient_after(Duration::from_millis(1500)));
///
/// // The table can be changed code by code.
/// let classifier = classifier.verdict(Code::Aborted, Verdict::transient());
/// assert_eq!(classifier.verdict_of(Code::Aborted), Verdict::transient());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcClassifier {
    table: [Verdict; 17],
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcClassifier {
    /// The classifier with the default table. Pushback is passed on whole:
    /// the retry layer's `honor_retry_after` maximum is the one maximum.
    pub const fn new() -> Self {
        let mut table = [Verdict::Failure; 17];
        table[Code::Ok as usize] = Verdict::Success;
        table[Code::InvalidArgument as usize] = Verdict::FunctionalError;
        table[Code::NotFound as usize] = Verdict::FunctionalError;
        table[Code::AlreadyExists as usize] = Verdict::FunctionalError;
        table[Code::PermissionDenied as usize] = Verdict::FunctionalError;
        table[Code::FailedPrecondition as usize] = Verdict::FunctionalError;
        table[Code::OutOfRange as usize] = Verdict::FunctionalError;
        table[Code::Unauthenticated as usize] = Verdict::FunctionalError;
        table[Code::Unimplemented as usize] = Verdict::FunctionalError;
        table[Code::Unavailable as usize] = Verdict::transient();
        table[Code::ResourceExhausted as usize] = Verdict::transient();
        Self { table }
    }

    /// Judges `code` as `verdict` from now on. A transient verdict takes
    /// the answer's pushback as its hint; a retry-after hint given here is
    /// dropped.
    pub const fn verdict(mut self, code: Code, verdict: Verdict) -> Self {
        self.table[code as usize] = match verdict {
            Verdict::Transient { .. } => Verdict::transient(),
            other => other,
        };
        self
    }

    /// The verdict for `code`, before pushback.
    pub const fn verdict_of(&self, code: Code) -> Verdict {
        self.table[code as usize]
    }

    /// The verdict for an answer with `code`, whose pushback (if any) is
    /// in `headers`.
    pub fn judge_code(&self, code: Code, headers: &HeaderMap) -> Verdict {
        match self.table[code as usize] {
            Verdict::Transient { .. } => match pushback_in(headers, Duration::MAX) {
                Pushback::Absent => Verdict::transient(),
                Pushback::After(wait) => Verdict::transient_after(wait),
                Pushback::DoNotRetry => Verdict::Failure,
            },
            verdict => verdict,
        }
    }

    /// The status code of a response: `grpc-status` in its headers
    /// (a trailers-only answer), the HTTP status mapped to a gRPC code when
    /// it is not 200, or `grpc-status` in its trailers when
    /// [`GrpcResponseLayer`](super::GrpcResponseLayer) read them (`UNKNOWN`
    /// if the stream ended without one). `None` while the status is still
    /// in the stream.
    pub fn status_of<'a>(
        status: http::StatusCode,
        headers: &'a HeaderMap,
        extensions: &'a Extensions,
    ) -> Option<(Code, &'a HeaderMap)> {
        if let Some(code) = status_in(headers) {
            return Some((code, headers));
        }
        if status != http::StatusCode::OK {
            return Some((Code::from_http_status(status.as_u16()), headers));
        }
        let trailers = extensions.get::<GrpcTrailers>()?;
        Some((
            status_in(trailers.headers()).unwrap_or(Code::Unknown),
            trailers.headers(),
        ))
    }

    fn judge_error<E: 'static>(&self, err: &E) -> Verdict {
        match transport_error(err) {
            // Never reached the server: safe whatever the table says.
            Transport::NotSent => Verdict::transient(),
            Transport::TimedOut => self.table[Code::DeadlineExceeded as usize],
            // What a gRPC client reports for a broken connection.
            Transport::Other => self.table[Code::Unavailable as usize],
        }
    }
}

impl<B, B2, E: 'static> Classify<http::Request<B>, http::Response<B2>, E> for GrpcClassifier {
    type Facts = ();

    #[inline]
    fn facts(&self, _request: &http::Request<B>) {}

    #[inline]
    fn classify(&self, _facts: &(), outcome: Result<&http::Response<B2>, &E>) -> Verdict {
        match outcome {
            Ok(response) => {
                match Self::status_of(response.status(), response.headers(), response.extensions())
                {
                    Some((code, headers)) => self.judge_code(code, headers),
                    // Headers arrived and said nothing bad; the status is
                    // still in the stream.
                    None => Verdict::Success,
                }
            }
            Err(err) => self.judge_error(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{BoxError, Elapsed};

    fn judge(response: http::Response<()>) -> Verdict {
        Classify::<http::Request<()>, _, BoxError>::classify(
            &GrpcClassifier::new(),
            &(),
            Ok(&response),
        )
    }

    #[test]
    fn table_and_sources() {
        let c = GrpcClassifier::new();
        assert_eq!(c.verdict_of(Code::Ok), Verdict::Success);
        assert_eq!(c.verdict_of(Code::Unavailable), Verdict::transient());
        assert_eq!(c.verdict_of(Code::DeadlineExceeded), Verdict::Failure);
        assert_eq!(c.verdict_of(Code::Internal), Verdict::Failure);
        assert_eq!(c.verdict_of(Code::NotFound), Verdict::FunctionalError);

        let ok = http::Response::builder().body(()).unwrap();
        assert_eq!(judge(ok), Verdict::Success);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "14".parse().unwrap());
        trailers.insert("grpc-retry-pushback-ms", "20".parse().unwrap());
        let mut later = http::Response::builder().body(()).unwrap();
        later.extensions_mut().insert(GrpcTrailers::new(trailers));
        assert_eq!(
            judge(later),
            Verdict::transient_after(Duration::from_millis(20))
        );
        let mut ended = http::Response::builder().body(()).unwrap();
        ended
            .extensions_mut()
            .insert(GrpcTrailers::new(HeaderMap::new()));
        assert_eq!(judge(ended), Verdict::Failure);
        let gateway = http::Response::builder().status(503).body(()).unwrap();
        assert_eq!(judge(gateway), Verdict::transient());
        let refused = http::Response::builder()
            .header("grpc-status", "14")
            .header("grpc-retry-pushback-ms", "-1")
            .body(())
            .unwrap();
        assert_eq!(judge(refused), Verdict::Failure);
    }

    #[test]
    fn transport_errors() {
        let c = GrpcClassifier::new();
        let judge_err = |err: BoxError| {
            Classify::<http::Request<()>, http::Response<()>, BoxError>::classify(
                &c,
                &(),
                Err(&err),
            )
        };
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(judge_err(Box::new(refused)), Verdict::transient());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(judge_err(Box::new(reset)), Verdict::transient());
        assert_eq!(judge_err(Box::new(Elapsed::new())), Verdict::Failure);
    }
}
