//! The harness shared by the benches that time one call at a time: a
//! current-thread runtime, and a loop that readies and calls a service
//! `iters` times inside one `block_on`, so the runtime's entry is not timed
//! per call; and the inner service and tower policies the benches and the
//! instruction counts measure beside steadfast's layers.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::Criterion;
use tokio::runtime::Runtime;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Service, ServiceExt};

/// The request every bench sends: no heap data, `Copy`.
pub(crate) type Request = (u64, u64);

/// Always ready; answers at once.
#[derive(Clone, Copy)]
#[allow(dead_code)] // Not every bench that shares this module uses it.
pub(crate) struct Echo;

impl Service<Request> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (a, b): Request) -> Self::Future {
        ready(Ok(a.wrapping_add(b)))
    }
}

/// tower's retry policy doing what steadfast's does without a budget: up
/// to 3 attempts, errors retried, requests cloned.
#[derive(Clone)]
#[allow(dead_code)] // Not every bench that shares this module uses it.
pub(crate) struct Attempts(pub(crate) u32);

impl<Res, E> tower::retry::Policy<Request, Res, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Request, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 > 1 => {
                self.0 -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Request) -> Option<Request> {
        Some(*req)
    }
}

/// tower's retry policy with its `TpsBudget`: a deposit per call, a
/// withdrawal per retry, as steadfast's budget does.
#[derive(Clone)]
#[allow(dead_code)] // Not every bench that shares this module uses it.
pub(crate) struct Budgeted(Arc<TpsBudget>);

#[allow(dead_code)] // Not every bench that shares this module uses it.
impl Budgeted {
    /// A budget of its own: 20 % of calls over 10 s, 10 retries a second
    /// at least.
    pub(crate) fn new() -> Self {
        Self(Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)))
    }
}

impl<Res, E> tower::retry::Policy<Request, Res, E> for Budgeted {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Request, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.0.deposit();
                None
            }
            Err(_) => self.0.withdraw().then(|| ready(())),
        }
    }

    fn clone_request(&mut self, req: &Request) -> Option<Request> {
        Some(*req)
    }
}

/// tower's hedge policy: every request may be cloned and hedged.
#[derive(Clone)]
#[allow(dead_code)] // Not every bench that shares this module uses it.
pub(crate) struct Hedgeable;

impl tower::hedge::Policy<Request> for Hedgeable {
    fn clone_request(&self, req: &Request) -> Option<Request> {
        Some(*req)
    }

    fn can_retry(&self, _: &Request) -> bool {
        true
    }
}

pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// Times ready + call + await of `svc`, back to back, as `group/name`.
pub(crate) fn bench_service<S>(c: &mut Criterion, group: &str, name: &str, rt: &Runtime, mut svc: S)
where
    S: Service<Request, Response = u64>,
    S::Error: std::fmt::Debug,
{
    c.benchmark_group(group).bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for i in 0..iters {
                    let ready = svc.ready().await.expect("ready");
                    black_box(ready.call(black_box((i, 1))).await.expect("call"));
                }
                start.elapsed()
            })
        });
    });
}
