//! Observability on paused time: the `call` span and the events of every
//! decision with their fields, request ids, metric names, labels and
//! values, listeners and the call context, health snapshots and their
//! JSON.

#[path = "../support/capture.rs"]
mod capture;
mod decisions;
mod health;
mod listeners;
mod metrics;
mod model;
mod recorder;
mod request_id;
mod trace;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use steadfast::BoxError;
use tower::Service;
use tower::service_fn;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Whether `id` looks like a generated request id: a version 7 UUID,
/// lowercase and hyphenated (`0190b6e5-2c3a-7d4e-9f00-1a2b3c4d5e6f`).
fn is_generated_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    id.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
        })
        && bytes[14] == b'7'
        && matches!(bytes[19], b'8' | b'9' | b'a' | b'b')
}

/// A backend that fails its first `failures` calls at once with
/// `"connection reset"`, then answers its request after `latency`.
fn flaky(
    failures: u32,
    latency: Duration,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send {
    let calls = Arc::new(AtomicU32::new(0));
    service_fn(move |request: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < failures {
                return Err(BoxError::from("connection reset"));
            }
            tokio::time::sleep(latency).await;
            Ok(request)
        }
    })
}

/// A backend that sleeps `latency`, then answers its request.
fn slow(
    latency: Duration,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send {
    flaky(0, latency)
}

/// A backend that fails while its switch is on.
#[derive(Clone, Default)]
struct Switch(Arc<AtomicBool>);

impl Switch {
    fn fail(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }

    fn service(
        &self,
    ) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send {
        let failing = Arc::clone(&self.0);
        service_fn(move |request: u32| {
            let fail = failing.load(Ordering::SeqCst);
            async move {
                if fail {
                    Err(BoxError::from("connection reset"))
                } else {
                    Ok(request)
                }
            }
        })
    }
}
