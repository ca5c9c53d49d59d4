//! Model-based test: random outcomes, durations, clock advances, abandoned
//! calls and handle operations run against the breaker and against a plain
//! reference model; states, admit/refuse decisions, the time left open and
//! the window's counts must agree at every step.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::poll;
use proptest::prelude::*;
use steadfast::BoxError;
use steadfast::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, State};
use steadfast::classify::Verdict;
use steadfast::error::CircuitOpen;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Success,
    Functional,
    Failure,
    Transient(Option<u64>),
    Rejected,
}

impl Kind {
    fn verdict(self) -> Verdict {
        match self {
            Kind::Success => Verdict::Success,
            Kind::Functional => Verdict::FunctionalError,
            Kind::Failure => Verdict::Failure,
            Kind::Transient(hint) => Verdict::Transient {
                retry_after: hint.map(Duration::from_millis),
            },
            Kind::Rejected => Verdict::Rejected { retry_after: None },
        }
    }

    fn failed(self) -> bool {
        matches!(self, Kind::Failure | Kind::Transient(_))
    }

    fn hint(self) -> Option<u64> {
        match self {
            Kind::Transient(hint) => hint,
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Call(Kind, u64),
    Start(Kind, u64),
    Finish(usize),
    Abandon(usize),
    Advance(u64),
    ForceOpen,
    Disable,
    MetricsOnly,
    Reset,
}

#[derive(Debug, Clone, Copy)]
enum WindowCfg {
    Count(usize),
    Time { bucket_ms: u64, buckets: u64 },
}

#[derive(Debug, Clone)]
struct Cfg {
    window: WindowCfg,
    minimum_calls: u64,
    failure_rate: f64,
    slow: Option<(u64, f64)>,
    open_ms: u64,
    backoff_max_ms: Option<u64>,
    hint_cap_ms: Option<u64>,
    consecutive: Option<u32>,
    probes: u32,
    max_wait_ms: Option<u64>,
}

impl Cfg {
    fn layer(
        &self,
    ) -> CircuitBreakerLayer<impl Fn(Result<&Verdict, &BoxError>) -> Verdict + use<>> {
        let mut builder = CircuitBreakerLayer::builder()
            .classifier(|out: Result<&Verdict, &BoxError>| match out {
                Ok(verdict) => *verdict,
                Err(_) => Verdict::transient(),
            })
            .minimum_calls(self.minimum_calls)
            .failure_rate_threshold(self.failure_rate)
            .open_duration(Duration::from_millis(self.open_ms))
            .half_open_probes(self.probes);
        builder = match self.window {
            WindowCfg::Count(size) => builder.count_window(size as u64),
            WindowCfg::Time { bucket_ms, buckets } => {
                builder.time_window(Duration::from_millis(bucket_ms * buckets), buckets as u32)
            }
        };
        if let Some((slow_ms, rate)) = self.slow {
            builder = builder
                .slow_call_duration(Duration::from_millis(slow_ms))
                .slow_call_rate_threshold(rate);
        }
        if let Some(max) = self.backoff_max_ms {
            builder = builder.open_backoff(2.0, Duration::from_millis(max));
        }
        if let Some(cap) = self.hint_cap_ms {
            builder = builder.honor_retry_after(Duration::from_millis(cap));
        }
        if let Some(wait) = self.max_wait_ms {
            builder = builder.max_half_open_wait(Duration::from_millis(wait));
        }
        if let Some(failures) = self.consecutive {
            builder = builder.consecutive_failures(failures);
        }
        builder.build().expect("valid settings")
    }

    fn trips(&self, calls: u64, failures: u64, slow: u64) -> bool {
        if calls == 0 {
            return false;
        }
        let calls = calls as f64;
        failures as f64 * 100.0 >= self.failure_rate * calls
            || self
                .slow
                .is_some_and(|(_, rate)| slow as f64 * 100.0 >= rate * calls)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MState {
    Closed,
    Open { until: u64 },
    HalfOpen { deadline: Option<u64> },
    ForcedOpen,
    Disabled,
    MetricsOnly,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ticket {
    Untracked,
    Counted(u64),
    Probe(u64),
}

/// The reference: the breaker as the issue describes it, in plain code.
#[derive(Debug)]
struct Model {
    cfg: Cfg,
    state: MState,
    generation: u64,
    openings: u32,
    /// Failed calls in a row, counted while closed or metrics-only.
    streak: u32,
    /// Count window: the last outcomes, (failed, slow).
    last: VecDeque<(bool, bool)>,
    /// Time window: (epoch, failed, slow) of every outcome since clearing.
    timed: Vec<(u64, bool, bool)>,
    taken: u32,
    done: u32,
    failed: u32,
    slow: u32,
}

impl Model {
    fn new(cfg: Cfg) -> Self {
        Self {
            cfg,
            state: MState::Closed,
            generation: 0,
            openings: 0,
            streak: 0,
            last: VecDeque::new(),
            timed: Vec::new(),
            taken: 0,
            done: 0,
            failed: 0,
            slow: 0,
        }
    }

    fn public_state(&self) -> State {
        match self.state {
            MState::Closed => State::Closed,
            MState::Open { .. } => State::Open,
            MState::HalfOpen { .. } => State::HalfOpen,
            MState::ForcedOpen => State::ForcedOpen,
            MState::Disabled => State::Disabled,
            MState::MetricsOnly => State::MetricsOnly,
        }
    }

    fn counts(&self, now: u64) -> (u64, u64, u64) {
        let mut counts = (0, 0, 0);
        let mut add = |failed: bool, slow: bool| {
            counts.0 += 1;
            counts.1 += u64::from(failed);
            counts.2 += u64::from(slow);
        };
        match self.cfg.window {
            WindowCfg::Count(_) => self.last.iter().for_each(|&(f, s)| add(f, s)),
            WindowCfg::Time { bucket_ms, buckets } => {
                let epoch = now / bucket_ms;
                for &(e, f, s) in &self.timed {
                    if e <= epoch && e + buckets > epoch {
                        add(f, s);
                    }
                }
            }
        }
        counts
    }

    fn transition(&mut self, to: MState) {
        self.state = to;
        self.generation += 1;
        if let MState::HalfOpen { .. } = to {
            (self.taken, self.done, self.failed, self.slow) = (0, 0, 0, 0);
        }
    }

    fn clear(&mut self) {
        self.last.clear();
        self.timed.clear();
        self.openings = 0;
        self.streak = 0;
    }

    /// The hint a failure carries, capped, if the breaker honours hints.
    fn honoured(&self, hint: Option<u64>) -> Option<u64> {
        Some(hint?.min(self.cfg.hint_cap_ms?)).filter(|h| *h > 0)
    }

    /// Opens for exactly `ms`, as a retry-after hint alone asks.
    fn open_exact(&mut self, now: u64, ms: u64) {
        self.openings += 1;
        self.transition(MState::Open { until: now + ms });
    }

    fn open(&mut self, now: u64, hint: Option<u64>) {
        let mut open = self.cfg.open_ms;
        if let Some(max) = self.cfg.backoff_max_ms {
            open = (open << self.openings.min(30)).min(max);
        }
        if let (Some(cap), Some(hint)) = (self.cfg.hint_cap_ms, hint) {
            open = open.max(hint.min(cap));
        }
        self.openings += 1;
        self.transition(MState::Open { until: now + open });
    }

    /// `Ok(ticket)` or `Err(remaining ms)`.
    fn admit(&mut self, now: u64) -> Result<Ticket, u64> {
        loop {
            match self.state {
                MState::Closed | MState::MetricsOnly => {
                    return Ok(Ticket::Counted(self.generation));
                }
                MState::Disabled => return Ok(Ticket::Untracked),
                MState::ForcedOpen => return Err(0),
                MState::Open { until } if now < until => return Err(until - now),
                MState::Open { .. } => {
                    let deadline = self.cfg.max_wait_ms.map(|wait| now + wait);
                    self.transition(MState::HalfOpen { deadline });
                }
                MState::HalfOpen { deadline } => {
                    if deadline.is_some_and(|d| now >= d) {
                        self.open(now, None);
                        continue;
                    }
                    if self.taken + self.done >= self.cfg.probes {
                        return Err(0);
                    }
                    self.taken += 1;
                    return Ok(Ticket::Probe(self.generation));
                }
            }
        }
    }

    fn abandon(&mut self, ticket: Ticket) {
        if ticket == Ticket::Probe(self.generation) {
            self.taken -= 1;
        }
    }

    fn complete(&mut self, ticket: Ticket, kind: Kind, elapsed: u64, now: u64) {
        if let Kind::Rejected = kind {
            return self.abandon(ticket);
        }
        let failed = kind.failed();
        let slow = self.cfg.slow.is_some_and(|(limit, _)| elapsed > limit);
        match ticket {
            Ticket::Untracked => {}
            Ticket::Counted(generation) if generation != self.generation => {}
            Ticket::Counted(_) => {
                match self.cfg.window {
                    WindowCfg::Count(size) => {
                        self.last.push_back((failed, slow));
                        if self.last.len() > size {
                            self.last.pop_front();
                        }
                    }
                    WindowCfg::Time { bucket_ms, .. } => {
                        self.timed.push((now / bucket_ms, failed, slow));
                    }
                }
                self.streak = if failed { self.streak + 1 } else { 0 };
                let (calls, failures, slows) = self.counts(now);
                if self.state == MState::Closed {
                    let rates =
                        calls >= self.cfg.minimum_calls && self.cfg.trips(calls, failures, slows);
                    let run = self.cfg.consecutive.is_some_and(|n| self.streak >= n);
                    if rates || run {
                        self.open(now, kind.hint());
                    } else if let Some(hint) = self.honoured(kind.hint()).filter(|_| failed) {
                        self.open_exact(now, hint);
                    }
                }
            }
            Ticket::Probe(generation) if generation != self.generation => {}
            Ticket::Probe(_) => {
                self.taken -= 1;
                self.done += 1;
                self.failed += u32::from(failed);
                self.slow += u32::from(slow);
                if failed && self.done < self.cfg.probes && self.honoured(kind.hint()).is_some() {
                    self.open(now, kind.hint());
                } else if self.done == self.cfg.probes {
                    let (done, failed, slow) = (self.done, self.failed, self.slow);
                    if self.cfg.trips(done.into(), failed.into(), slow.into()) {
                        self.open(now, kind.hint());
                    } else {
                        self.transition(MState::Closed);
                        self.clear();
                    }
                }
            }
        }
    }
}

type Request = (Kind, u64);

struct Held<F> {
    future: Pin<Box<F>>,
    kind: Kind,
    start: u64,
    end: u64,
    ticket: Ticket,
}

fn ms_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_millis()).expect("short test")
}

async fn run(cfg: Cfg, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let base = Instant::now();
    let layer = cfg.layer();
    let handle: CircuitBreakerHandle = layer.handle();
    let mut service = layer.layer(service_fn(|(kind, ms): Request| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        match kind {
            Kind::Rejected => {
                Err::<Verdict, BoxError>(Box::new(CircuitOpen::new(Duration::from_secs(7))))
            }
            kind => Ok(kind.verdict()),
        }
    }));
    let mut model = Model::new(cfg);
    let mut held = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        let now = ms_since(base);
        match op {
            Op::Call(kind, ms) | Op::Start(kind, ms) => {
                let mut future = Box::pin(service.ready().await.expect("ready").call((kind, ms)));
                let expected = model.admit(now);
                match (poll!(future.as_mut()), expected) {
                    (std::task::Poll::Pending, Ok(ticket)) => {
                        let call = Held {
                            future,
                            kind,
                            start: now,
                            end: now + ms,
                            ticket,
                        };
                        if matches!(op, Op::Call(..)) || held.len() >= 4 {
                            finish(&mut model, call, base).await?;
                        } else {
                            held.push(call);
                        }
                    }
                    (std::task::Poll::Ready(Err(err)), Err(remaining)) => {
                        let open = err.downcast_ref::<CircuitOpen>();
                        prop_assert!(open.is_some(), "step {step}: refused with {err}");
                        prop_assert_eq!(
                            open.map(CircuitOpen::remaining),
                            Some(Duration::from_millis(remaining)),
                            "step {}: time left open",
                            step
                        );
                    }
                    (got, expected) => {
                        return Err(TestCaseError::fail(format!(
                            "step {step} {op:?}: breaker gave {:?}, model {expected:?}",
                            got.map(|r| r.map_err(|e| e.to_string()))
                        )));
                    }
                }
            }
            Op::Finish(i) if !held.is_empty() => {
                let call = held.remove(i % held.len());
                finish(&mut model, call, base).await?;
            }
            Op::Abandon(i) if !held.is_empty() => {
                let call = held.remove(i % held.len());
                drop(call.future);
                model.abandon(call.ticket);
            }
            Op::Finish(_) | Op::Abandon(_) => {}
            Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
            Op::ForceOpen => {
                handle.force_open();
                model.transition(MState::ForcedOpen);
            }
            Op::Disable => {
                handle.disable();
                model.transition(MState::Disabled);
            }
            Op::MetricsOnly => {
                handle.metrics_only();
                model.transition(MState::MetricsOnly);
            }
            Op::Reset => {
                handle.reset();
                model.transition(MState::Closed);
                model.clear();
            }
        }
        let now = ms_since(base);
        let snapshot = handle.snapshot();
        prop_assert_eq!(snapshot.state, model.public_state(), "step {}", step);
        let counts = model.counts(now);
        prop_assert_eq!(
            (snapshot.calls, snapshot.failures, snapshot.slow_calls),
            counts,
            "step {}: window counts",
            step
        );
        if let MState::Open { until } = model.state {
            prop_assert_eq!(
                snapshot.open_remaining,
                Some(Duration::from_millis(until.saturating_sub(now)))
            );
        }
    }
    Ok(())
}

async fn finish<F>(model: &mut Model, call: Held<F>, base: Instant) -> Result<(), TestCaseError>
where
    F: Future<Output = Result<Verdict, BoxError>>,
{
    let before = ms_since(base);
    let result = call.future.await;
    let now = ms_since(base);
    prop_assert_eq!(
        now,
        call.end.max(before),
        "the call ends at its end, or now if past"
    );
    match call.kind {
        Kind::Rejected => prop_assert!(result.is_err()),
        kind => prop_assert_eq!(result.ok(), Some(kind.verdict())),
    }
    model.complete(call.ticket, call.kind, now - call.start, now);
    Ok(())
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Kind::Success),
        1 => Just(Kind::Functional),
        2 => Just(Kind::Failure),
        2 => prop::option::of(prop::sample::select(vec![100u64, 700, 1_500, 4_000]))
            .prop_map(Kind::Transient),
        1 => Just(Kind::Rejected),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let duration = prop::sample::select(vec![1u64, 10, 20, 40, 60, 90, 120]);
    let op = prop_oneof![
        12 => (kind(), duration.clone()).prop_map(|(k, d)| Op::Call(k, d)),
        4 => (kind(), duration).prop_map(|(k, d)| Op::Start(k, d)),
        3 => (0usize..4).prop_map(Op::Finish),
        2 => (0usize..4).prop_map(Op::Abandon),
        5 => prop::sample::select(vec![1u64, 50, 100, 250, 400, 800, 1_500]).prop_map(Op::Advance),
        1 => prop_oneof![
            Just(Op::ForceOpen),
            Just(Op::Disable),
            Just(Op::MetricsOnly),
            Just(Op::Reset),
        ],
    ];
    prop::collection::vec(op, 1..120)
}

fn cfg(window: impl Strategy<Value = (WindowCfg, u64)>) -> impl Strategy<Value = Cfg> {
    (
        window,
        prop::sample::select(vec![25.0, 50.0, 100.0]),
        prop::option::of((
            prop::sample::select(vec![15u64, 50]),
            prop::sample::select(vec![50.0, 100.0]),
        )),
        prop::sample::select(vec![250u64, 500, 1_000]),
        prop::option::of(prop::sample::select(vec![1u64, 2, 4])),
        prop::option::of(prop::sample::select(vec![300u64, 2_000])),
        1u32..=3,
        prop::option::of(prop::sample::select(vec![200u64, 700])),
        prop::option::of(1u32..=4),
    )
        .prop_map(
            |(
                (window, minimum_calls),
                failure_rate,
                slow,
                open_ms,
                grow,
                hint_cap_ms,
                probes,
                max_wait_ms,
                consecutive,
            )| Cfg {
                window,
                minimum_calls,
                failure_rate,
                slow,
                open_ms,
                backoff_max_ms: grow.map(|g| open_ms * g),
                hint_cap_ms,
                consecutive,
                probes,
                max_wait_ms,
            },
        )
}

fn count_window() -> impl Strategy<Value = (WindowCfg, u64)> {
    (1usize..=6).prop_flat_map(|size| (Just(WindowCfg::Count(size)), 1..=size as u64))
}

fn time_window() -> impl Strategy<Value = (WindowCfg, u64)> {
    (prop::sample::select(vec![100u64, 250]), 1u64..=4, 1u64..=4)
        .prop_map(|(bucket_ms, buckets, min)| (WindowCfg::Time { bucket_ms, buckets }, min))
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn count_window_agrees_with_the_model(cfg in cfg(count_window()), ops in ops()) {
        paused_runtime().block_on(run(cfg, ops))?;
    }

    #[test]
    fn time_window_agrees_with_the_model(cfg in cfg(time_window()), ops in ops()) {
        paused_runtime().block_on(run(cfg, ops))?;
    }
}
