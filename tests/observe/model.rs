//! Whatever happens to a breaker, its state gauges show exactly one
//! state, the one its handle reports, and every transition is counted.

use proptest::prelude::*;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::observe::metrics as names;
use tower::{Layer, Service, ServiceExt};

use crate::metrics::shown_state;
use crate::recorder::Metrics;
use crate::{Switch, ms};

#[derive(Debug, Clone, Copy)]
enum Op {
    /// A call that answers.
    Succeed,
    /// A call that fails.
    Fail,
    /// Time passes.
    Wait(u64),
    ForceOpen,
    Disable,
    MetricsOnly,
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Succeed),
        4 => Just(Op::Fail),
        2 => (1_u64..300).prop_map(Op::Wait),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::Disable),
        1 => Just(Op::MetricsOnly),
        1 => Just(Op::Reset),
    ]
}

fn run(ops: &[Op]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let metrics = Metrics::new();
        let _recorder = metrics.install();
        let switch = Switch::default();
        let layer = CircuitBreakerLayer::builder()
            .name("model")
            .count_window(4)
            .minimum_calls(2)
            .open_duration(ms(100))
            .half_open_probes(2)
            .build()
            .expect("valid settings");
        let handle = layer.handle();
        let mut service = layer.layer(switch.service());
        let mut transitions = 0;
        let mut last = handle.state();
        for op in ops {
            match *op {
                Op::Succeed | Op::Fail => {
                    switch.fail(matches!(op, Op::Fail));
                    let ready = service.ready().await.expect("always ready");
                    let _ = ready.call(1).await;
                }
                Op::Wait(n) => tokio::time::advance(ms(n)).await,
                Op::ForceOpen => handle.force_open(),
                Op::Disable => handle.disable(),
                Op::MetricsOnly => handle.metrics_only(),
                Op::Reset => handle.reset(),
            }
            let m = metrics.read();
            let state = handle.state();
            assert_eq!(shown_state(&m, "model", ""), state.as_str(), "after {op:?}");
            // Forcing counts a transition even to the same state; calls
            // count one per change, and a call may make two (open to
            // half-open, then closed or open again).
            let counted = m.total(names::BREAKER_TRANSITIONS);
            assert!(counted >= transitions, "after {op:?}");
            if state != last {
                assert!(counted > transitions, "after {op:?}: {last} -> {state}");
            }
            transitions = counted;
            last = state;
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_state_gauges_always_show_the_handles_state(ops in prop::collection::vec(op(), 1..60)) {
        run(&ops);
    }
}
