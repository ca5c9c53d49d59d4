//! Fuzz-style properties of the header parsers: any bytes, no panic, a
//! result within bounds.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use steadfast::http::{parse_deadline_header, parse_retry_after};

fn any_now() -> impl Strategy<Value = SystemTime> {
    (0u64..8_000_000_000).prop_map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

fn header_like() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[ \t]*-?[0-9]{0,30}[ \t]*".prop_map(String::into_bytes),
        "(Mon|Tue|Sun), [0-9]{2} (Jan|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #[test]
    fn retry_after_never_panics_and_stays_within_max(
        value in header_like(),
        now in any_now(),
        max_ms in 0u64..10_000_000,
    ) {
        let max = Duration::from_millis(max_ms);
        if let Some(wait) = parse_retry_after(&value, now, max) {
            prop_assert!(wait <= max);
        }
    }

    #[test]
    fn retry_after_delta_seconds_are_read_exactly(secs in 0u64..1_000_000, now in any_now()) {
        let max = Duration::from_secs(2_000_000);
        prop_assert_eq!(
            parse_retry_after(secs.to_string().as_bytes(), now, max),
            Some(Duration::from_secs(secs))
        );
    }

    #[test]
    fn retry_after_dates_are_read_relative_to_now(ahead in 0u64..100_000, now in any_now()) {
        let date = httpdate::fmt_http_date(now + Duration::from_secs(ahead));
        let wait = parse_retry_after(date.as_bytes(), now, Duration::from_secs(1_000_000));
        prop_assert_eq!(wait, Some(Duration::from_secs(ahead)));
    }

    #[test]
    fn deadline_header_never_panics_and_stays_within_max(
        value in header_like(),
        max_ms in 0u64..10_000_000,
    ) {
        let max = Duration::from_millis(max_ms);
        if let Some(budget) = parse_deadline_header(&value, max) {
            prop_assert!(budget <= max);
        }
    }

    #[test]
    fn deadline_header_milliseconds_are_read_exactly(ms in 0u64..u64::MAX / 2) {
        let max = Duration::from_millis(u64::MAX);
        prop_assert_eq!(
            parse_deadline_header(ms.to_string().as_bytes(), max),
            Some(Duration::from_millis(ms))
        );
    }
}
