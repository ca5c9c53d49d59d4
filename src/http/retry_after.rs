//! `Retry-After`: delta-seconds or an HTTP-date, read defensively.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// Reads the `Retry-After` header of a response, as of now.
///
/// See [`parse_retry_after`] for the rules; the first header wins.
pub fn retry_after(headers: &HeaderMap, max: Duration) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?;
    parse_retry_after(value.as_bytes(), SystemTime::now(), max)
}

/// Parses a `Retry-After` value (RFC 9110 §10.2.3) received at `now`.
///
/// - delta-seconds (`"120"`): that many seconds;
/// - an HTTP-date (`"Wed, 21 Oct 2015 07:28:00 GMT"`, or the obsolete
///   RFC 850 and asctime forms): the time from `now` until then, zero if it
///   has passed;
/// - surrounding whitespace is ignored;
/// - a value longer than `max` (including one too large to represent) is
///   clamped to `max`;
/// - anything else (empty, negative, fractional, garbage, not UTF-8) is
///   ignored: `None`.
///
/// Clamped and ignored values are reported as `tracing` events (target
/// `steadfast::http`). Never panics, whatever the bytes.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use steadfast::http::parse_retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
/// let max = Duration::from_secs(300);
/// assert_eq!(parse_retry_after(b"120", now, max), Some(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT", now, max),
///     Some(Duration::from_secs(10))
/// );
/// assert_eq!(parse_retry_after(b"99999999999999999999", now, max), Some(max));
/// assert_eq!(parse_retry_after(b"-5", now, max), None);
/// assert_eq!(parse_retry_after(b"soon", now, max), None);
/// ```
pub fn parse_retry_after(value: &[u8], now: SystemTime, max: Duration) -> Option<Duration> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return ignored(value, "empty");
    }
    if value.iter().all(u8::is_ascii_digit) {
        // Leading zeros and absurd lengths alike: saturate, then clamp.
        let secs = value.iter().fold(0u64, |acc, &d| {
            acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
        return Some(clamp(Duration::from_secs(secs), max));
    }
    if value.first() == Some(&b'-') && value.len() > 1 && value[1..].iter().all(u8::is_ascii_digit)
    {
        return ignored(value, "negative");
    }
    let Ok(text) = std::str::from_utf8(value) else {
        return ignored(value, "not_utf8");
    };
    match httpdate::parse_http_date(text) {
        Ok(at) => Some(clamp(at.duration_since(now).unwrap_or(Duration::ZERO), max)),
        Err(_) => ignored(value, "malformed"),
    }
}

fn clamp(wait: Duration, max: Duration) -> Duration {
    if wait > max {
        tracing::debug!(
            target: "steadfast::http",
            layer = "http",
            delay_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX),
            reason = "clamped",
            "retry-after longer than allowed; clamped"
        );
        max
    } else {
        wait
    }
}

#[inline(never)]
fn ignored(value: &[u8], reason: &'static str) -> Option<Duration> {
    tracing::debug!(
        target: "steadfast::http",
        layer = "http",
        reason,
        value = %String::from_utf8_lossy(&value[..value.len().min(64)]),
        "retry-after ignored"
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_770);
        let max = Duration::from_secs(300);
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(text.as_bytes(), now, max),
                Some(Duration::from_secs(7)),
                "{text}"
            );
        }
        // A date in the past: retry now.
        let later = now + Duration::from_secs(3600);
        assert_eq!(
            parse_retry_after(b"Sun, 06 Nov 1994 08:49:37 GMT", later, max),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after(b"  007 ", now, max),
            Some(Duration::from_secs(7))
        );
        for bad in [
            "",
            "1.5",
            "-1",
            "+3",
            "1 2",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad.as_bytes(), now, max), None, "{bad:?}");
        }
        assert_eq!(parse_retry_after(&[0xff, 0xfe], now, max), None);
    }
}
