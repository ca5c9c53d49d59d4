//! The harness shared by the benches that time one call at a time: a
//! current-thread runtime, and a loop that readies and calls a service
//! `iters` times inside one `block_on`, so the runtime's entry is not timed
//! per call.

use std::hint::black_box;

use criterion::Criterion;
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};

/// The request every bench sends: no heap data, `Copy`.
pub(crate) type Request = (u64, u64);

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
