//! gRPC status codes and the headers that carry them.

use std::fmt;

use http::{HeaderMap, HeaderName};

/// The header (or trailer) carrying a call's status code.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The header (or trailer) carrying a call's status message.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// The trailer by which a server asks its clients to wait before retrying.
pub const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");
/// The request header carrying the time a client is willing to wait.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// A gRPC status code, as the `grpc-status` header carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Code {
    /// `0`: not an error.
    Ok = 0,
    /// `1`: the call was cancelled, usually by the caller.
    Cancelled = 1,
    /// `2`: an error without a better code.
    Unknown = 2,
    /// `3`: the caller sent an invalid argument.
    InvalidArgument = 3,
    /// `4`: the deadline passed before the call completed.
    DeadlineExceeded = 4,
    /// `5`: an entity was not found.
    NotFound = 5,
    /// `6`: the entity the caller tried to create exists.
    AlreadyExists = 6,
    /// `7`: the caller may not do this.
    PermissionDenied = 7,
    /// `8`: a resource (a quota, the server's capacity) is exhausted.
    ResourceExhausted = 8,
    /// `9`: the system is not in a state the call requires.
    FailedPrecondition = 9,
    /// `10`: the call was aborted, often by a concurrency conflict.
    Aborted = 10,
    /// `11`: the call went past the valid range.
    OutOfRange = 11,
    /// `12`: the method is not implemented.
    Unimplemented = 12,
    /// `13`: an invariant of the server broke.
    Internal = 13,
    /// `14`: the service is unavailable for now.
    Unavailable = 14,
    /// `15`: data was lost or corrupted.
    DataLoss = 15,
    /// `16`: the caller has no valid credentials.
    Unauthenticated = 16,
}

impl Code {
    /// Every code, in numeric order.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code numbered `n`; codes outside 0 to 16 are [`Code::Unknown`],
    /// as gRPC specifies.
    pub const fn from_i32(n: i32) -> Code {
        if n >= 0 && n < 17 {
            Code::ALL[n as usize]
        } else {
            Code::Unknown
        }
    }

    /// The code's number.
    pub const fn as_i32(self) -> i32 {
        self as i32
    }

    /// The code's name, as gRPC spells it (`UNAVAILABLE`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The code a gRPC client reports for an HTTP status that came
    /// without a `grpc-status` (gRPC's HTTP-to-gRPC status mapping).
    pub const fn from_http_status(status: u16) -> Code {
        match status {
            200 => Code::Ok,
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// Parses a `grpc-status` value: ASCII digits. Anything else is
    /// `None`; numbers outside 0 to 16 are [`Code::Unknown`].
    pub fn parse(value: &[u8]) -> Option<Code> {
        let value = value.trim_ascii();
        if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = value
            .iter()
            .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'));
        Some(i32::try_from(n).map_or(Code::Unknown, Code::from_i32))
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The `grpc-status` found in `headers`, if any: `Some(Unknown)` for a
/// value that is not a number, with an event.
pub(crate) fn status_in(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get(GRPC_STATUS)?;
    match Code::parse(value.as_bytes()) {
        Some(code) => Some(code),
        None => {
            malformed_status(value.as_bytes());
            Some(Code::Unknown)
        }
    }
}

#[inline(never)]
fn malformed_status(value: &[u8]) {
    tracing::debug!(
        target: "steadfast::grpc",
        layer = "grpc",
        reason = "malformed",
        value = %String::from_utf8_lossy(&value[..value.len().min(64)]),
        "grpc-status is not a number; read as UNKNOWN"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for (n, code) in Code::ALL.iter().enumerate() {
            assert_eq!(Code::from_i32(n as i32), *code);
            assert_eq!(code.as_i32(), n as i32);
            assert_eq!(Code::parse(n.to_string().as_bytes()), Some(*code));
        }
        assert_eq!(Code::from_i32(-1), Code::Unknown);
        assert_eq!(Code::from_i32(17), Code::Unknown);
        assert_eq!(Code::parse(b"99999999999"), None);
        assert_eq!(Code::parse(b"4294967296"), Some(Code::Unknown));
        assert_eq!(Code::parse(b"-1"), None);
        assert_eq!(Code::parse(b""), None);
        assert_eq!(Code::Unavailable.to_string(), "UNAVAILABLE");
    }
}
