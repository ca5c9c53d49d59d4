//! The events that say which source answered and why.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::error::CircuitOpen;
use steadfast::fallback::FallbackLayer;
use tower::{Layer, ServiceExt, service_fn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type Fields = BTreeMap<String, String>;

/// Keeps the fields of every `steadfast::fallback` event.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Fields>>>);

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Recorder {
    // Decided per event: other tests of this binary run at the same time
    // without a subscriber, and a cached `never` would hide our events.
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "steadfast::fallback"
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::new();
        fields.insert("level".to_owned(), event.metadata().level().to_string());
        event.record(&mut Visitor(&mut fields));
        self.0.lock().unwrap().push(fields);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields.get(name).map_or("", String::as_str)
}

#[tokio::test]
async fn an_event_names_the_source_the_verdict_and_the_reason() {
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());
    tracing::callsite::rebuild_interest_cache();

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

    let events = recorder.0.lock().unwrap().clone();
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
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());
    tracing::callsite::rebuild_interest_cache();

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

    let events = recorder.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(field(&events[0], "source"), "none");
    assert_eq!(field(&events[0], "level"), "WARN");
}

#[tokio::test(start_paused = true)]
async fn an_answer_at_the_latency_budget_says_so() {
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());
    tracing::callsite::rebuild_interest_cache();

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

    let events = recorder.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    let served = &events[0];
    assert_eq!(field(served, "name"), "prices");
    assert_eq!(field(served, "source"), "cache");
    assert_eq!(field(served, "reason"), "latency_budget");
    assert_eq!(field(served, "verdict"), "transient");
    assert_eq!(field(served, "age_ms"), "2100");
    assert_eq!(field(served, "level"), "INFO");
}
