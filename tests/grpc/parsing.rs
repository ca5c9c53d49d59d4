//! Whatever bytes a peer sends in `grpc-timeout`, `grpc-status` or
//! `grpc-retry-pushback-ms`: no panic, values within bounds.

use std::time::Duration;

use proptest::prelude::*;
use steadfast::BoxError;
use steadfast::classify::{Classify, Verdict};
use steadfast::grpc::{
    GrpcClassifier, GrpcServerDeadlineLayer, Pushback, encode_grpc_timeout, parse_grpc_timeout,
    parse_pushback,
};
use steadfast::timeout::Deadline;
use tower::{Layer, ServiceExt, service_fn};

fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..16),
        "[0-9]{0,12}[HMSmun]?".prop_map(String::into_bytes),
        "-?[0-9]{0,25}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #[test]
    fn grpc_timeout_never_panics_and_never_exceeds_max(
        bytes in header_bytes(),
        max_ms in 0u64..10_000_000,
    ) {
        let max = Duration::from_millis(max_ms);
        if let Some(t) = parse_grpc_timeout(&bytes, max) {
            prop_assert!(t <= max);
        }
    }

    #[test]
    fn grpc_timeout_round_trips_rounded_down(nanos in any::<u64>(), secs in any::<u64>()) {
        for d in [Duration::from_nanos(nanos), Duration::from_secs(secs)] {
            let text = encode_grpc_timeout(d);
            prop_assert!(text.len() <= 9);
            let back = parse_grpc_timeout(text.as_bytes(), Duration::MAX).unwrap();
            prop_assert!(back <= d);
        }
    }

    #[test]
    fn pushback_never_panics(bytes in header_bytes()) {
        let max = Duration::from_secs(60);
        match parse_pushback(&bytes, max) {
            Pushback::After(wait) => prop_assert!(wait <= max),
            Pushback::DoNotRetry | Pushback::Absent => {}
        }
    }

    #[test]
    fn the_classifier_takes_any_header_bytes(
        status in header_bytes(),
        pushback in header_bytes(),
    ) {
        let mut builder = http::Response::builder();
        if let Ok(v) = http::HeaderValue::from_bytes(&status) {
            builder = builder.header("grpc-status", v);
        }
        if let Ok(v) = http::HeaderValue::from_bytes(&pushback) {
            builder = builder.header("grpc-retry-pushback-ms", v);
        }
        let response = builder.body(()).unwrap();
        let verdict = Classify::<http::Request<()>, _, BoxError>::classify(
            &GrpcClassifier::new(),
            &(),
            Ok(&response),
        );
        // The classifier passes the pushback whole (the retry layer bounds
        // it): a hint is exactly the milliseconds the header states.
        if let Verdict::Transient { retry_after: Some(wait) } = verdict {
            prop_assert_eq!(
                parse_pushback(&pushback, Duration::MAX),
                Pushback::After(wait)
            );
        }
    }

    #[test]
    fn the_server_deadline_takes_any_header_bytes(bytes in header_bytes()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let max = Duration::from_secs(2);
        let left = runtime.block_on(async {
            let server = GrpcServerDeadlineLayer::new(max).unwrap().layer(service_fn(
                |_: http::Request<()>| async {
                    Ok::<_, BoxError>(Deadline::current().map(Deadline::remaining))
                },
            ));
            let mut request = http::Request::post("/pkg.Svc/Get");
            if let Ok(v) = http::HeaderValue::from_bytes(&bytes) {
                request = request.header("grpc-timeout", v);
            }
            server.oneshot(request.body(()).unwrap()).await.unwrap()
        });
        let left = left.unwrap();
        prop_assert!(left <= max);
    }
}
