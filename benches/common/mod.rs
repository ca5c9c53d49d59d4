//! The harness shared by the benches that time one call at a time: a
//! current-thread runtime, and a loop that readies and calls a service
//! `iters` times inside one `block_on`, so the runtime's entry is not timed
//! per call.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::task::{Context, Poll};

use criterion::Criterion;
use tokio::runtime::Runtime;
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
