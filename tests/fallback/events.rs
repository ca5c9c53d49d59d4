//! The events that say which source answered and why.

use std::time::Duration;

use steadfast::BoxError;
use steadfast::error::CircuitOpen;
use steadfast::fallback::FallbackLayer;
use tower::{Layer, ServiceExt, service_fn};

use crate::capture::{Capture, EventRecord};

/// The `steadfast::fallback` events captured so far.
fn fallback_events(capture: &Capture) -> Vec<EventRecord> {
    capture
        .events()
        .into_iter()
        .filter(|e| e.target == "steadfast::fallback")
        .collect()
}

fn field(event: &EventRecord, name: &str) -> String {
    match name {
        "level" => event.level.to_string(),
        _ => event.field(name).to_owned(),
    }
}

#[tokio::test]
async fn an_event_names_the_source_the_verdict_and_the_reason() {
    let (capture, _guard) = Capture::install();

    let layer = FallbackLayer::builder()
        .static_response("static")
        .name("prices")
        .build()
        .unwrap();
    let open = layer.layer(service_fn(|_: u32| async {
        Err::<&'static str, BoxError>(Box::new(CircuitOpen::new(Duration::from_secs(1))))
    }));
    assert_eq!(open.oneshot(1).await.unwrap(), "static");
    let reset = layer.layer(service_fn(|_: u32| async {
        Err::<&'static str, BoxError>("connection reset".into())
    }));
    assert_eq!(reset.oneshot(1).await.unwrap(), "static");

    let events = fallback_events(&capture);
    assert_eq!(events.len(), 2, "{events:?}");
    let first = &events[0];
    assert_eq!(field(first, "layer"), "fallback");
    assert_eq!(field(first, "name"), "prices");
    assert_eq!(field(first, "source"), "static");
    assert_eq!(field(first, "verdict"), "rejected");
    assert_eq!(field(first, "reason"), "circuit_open");
    assert_eq!(field(first, "level"), "INFO");
    assert_eq!(field(&events[1], "verdict"), "transient");
    assert_eq!(field(&events[1], "reason"), "transient");
}

#[tokio::test]
async fn an_event_says_when_no_source_answered() {
    let (capture, _guard) = Capture::install();

    let failing = service_fn(|_: u32| async { Err::<u32, BoxError>("alternate down".into()) });
    let svc = FallbackLayer::builder()
        .alternate(failing)
        .build()
        .unwrap()
        .layer(service_fn(|_: u32| async {
            Err::<u32, BoxError>("primary down".into())
        }));
    assert_eq!(
        svc.oneshot(1).await.unwrap_err().to_string(),
        "primary down"
    );

    let events = fallback_events(&capture);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(field(&events[0], "source"), "none");
    assert_eq!(field(&events[0], "level"), "WARN");
}

#[tokio::test(start_paused = true)]
async fn an_answer_at_the_latency_budget_says_so() {
    let (capture, _guard) = Capture::install();

    let hang = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = hang.clone();
    let svc = FallbackLayer::builder()
        .cache(
            steadfast::fallback::FallbackCache::builder()
                .build()
                .unwrap(),
        )
        .serve_stale_after(Duration::from_millis(100))
        .name("prices")
        .build()
        .unwrap()
        .layer(service_fn(move |request: u32| {
            let hang = flag.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                if hang {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                Ok::<_, BoxError>(request * 10)
            }
        }));
    assert_eq!(svc.clone().oneshot(4).await.unwrap(), 40);
    tokio::time::advance(Duration::from_secs(2)).await;
    hang.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(svc.clone().oneshot(4).await.unwrap(), 40);

    let events = fallback_events(&capture);
    assert_eq!(events.len(), 1, "{events:?}");
    let served = &events[0];
    assert_eq!(field(served, "name"), "prices");
    assert_eq!(field(served, "source"), "cache");
    assert_eq!(field(served, "reason"), "latency_budget");
    assert_eq!(field(served, "verdict"), "transient");
    assert_eq!(field(served, "age_ms"), "2100");
    assert_eq!(field(served, "level"), "INFO");
}
