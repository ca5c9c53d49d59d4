//! `grpc-retry-pushback-ms`: the server's word on when to retry.

use std::time::Duration;

use http::HeaderMap;

use super::status::GRPC_RETRY_PUSHBACK_MS;

/// What a `grpc-retry-pushback-ms` value asks of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pushback {
    /// No pushback: the client's own backoff applies.
    Absent,
    /// Retry after this long, instead of the client's backoff.
    After(Duration),
    /// Do not retry: the value was negative or malformed, as gRPC
    /// specifies.
    DoNotRetry,
}

/// Parses a `grpc-retry-pushback-ms` value.
///
/// - whole milliseconds (`"250"`), surrounding whitespace allowed: retry
///   after that long, clamped to `max` with an event;
/// - a negative number, an empty value or anything else: do not retry
///   (gRPC's rule for negative or malformed pushback), with an event.
///
/// Never panics, whatever the bytes.
///
/// ```
/// use std::time::Duration;
/// use steadfast::grpc::{Pushback, parse_pushback};
///
/// let max = Duration::from_secs(60);
/// assert_eq!(parse_pushback(b"250", max), Pushback::After(Duration::from_millis(250)));
/// assert_eq!(parse_pushback(b"99999999999999999999", max), Pushback::After(max));
/// assert_eq!(parse_pushback(b"-1", max), Pushback::DoNotRetry);
/// assert_eq!(parse_pushback(b"soon", max), Pushback::DoNotRetry);
/// ```
pub fn parse_pushback(value: &[u8], max: Duration) -> Pushback {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        let reason = if value.first() == Some(&b'-') {
            "negative"
        } else {
            "malformed"
        };
        refused(value, reason);
        return Pushback::DoNotRetry;
    }
    let ms = value.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    let wait = Duration::from_millis(ms);
    if wait > max {
        clamped(max);
        return Pushback::After(max);
    }
    Pushback::After(wait)
}

/// The pushback in `headers`; the first value wins.
pub(crate) fn pushback_in(headers: &HeaderMap, max: Duration) -> Pushback {
    match headers.get(GRPC_RETRY_PUSHBACK_MS) {
        None => Pushback::Absent,
        Some(value) => parse_pushback(value.as_bytes(), max),
    }
}

#[inline(never)]
fn refused(value: &[u8], reason: &'static str) {
    tracing::debug!(
        target: "steadfast::grpc",
        layer = "grpc",
        reason,
        value = %String::from_utf8_lossy(&value[..value.len().min(64)]),
        "grpc-retry-pushback-ms negative or malformed; the call is not retried"
    );
}

#[inline(never)]
fn clamped(max: Duration) {
    tracing::debug!(
        target: "steadfast::grpc",
        layer = "grpc",
        delay_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX),
        reason = "clamped",
        "grpc-retry-pushback-ms longer than allowed; clamped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let max = Duration::from_secs(10);
        assert_eq!(
            parse_pushback(b" 007 ", max),
            Pushback::After(Duration::from_millis(7))
        );
        assert_eq!(parse_pushback(b"0", max), Pushback::After(Duration::ZERO));
        for bad in ["", "-5", "1.5", "+3", "1 2", "1e3"] {
            assert_eq!(
                parse_pushback(bad.as_bytes(), max),
                Pushback::DoNotRetry,
                "{bad:?}"
            );
        }
        assert_eq!(parse_pushback(&[0xff], max), Pushback::DoNotRetry);
    }
}
