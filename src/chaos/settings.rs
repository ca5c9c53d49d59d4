//! The fault settings, changed at run time through a handle.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{ConfigError, check};
use crate::random::{RandomSource, SeededRandom};

/// A rate in `[0, 1]`, kept as the bits of an `f64`.
#[derive(Debug, Default)]
struct Rate(AtomicU64);

impl Rate {
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, rate: f64) {
        self.0.store(rate.to_bits(), Ordering::Relaxed);
    }
}

/// What one call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    Pass,
    Error,
    Hang,
    Respond,
}

impl Fault {
    /// The fault as events name it.
    pub(crate) const fn event(self) -> crate::event::ChaosFault {
        match self {
            Fault::Pass => crate::event::ChaosFault::None,
            Fault::Error => crate::event::ChaosFault::Error,
            Fault::Hang => crate::event::ChaosFault::Hang,
            Fault::Respond => crate::event::ChaosFault::Respond,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) name: Cow<'static, str>,
    enabled: AtomicBool,
    error: Rate,
    hang: Rate,
    respond: Rate,
    latency: Rate,
    latency_min: AtomicU64,
    latency_max: AtomicU64,
    random: SeededRandom,
    pub(crate) calls: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) hangs: AtomicU64,
    pub(crate) responses: AtomicU64,
    pub(crate) delayed: AtomicU64,
    /// The metric series of its faults, made with the layer.
    pub(crate) decisions: crate::event::Decisions,
}

/// The rates a chaos layer starts with, or is switched to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rates {
    pub(crate) error: f64,
    pub(crate) hang: f64,
    pub(crate) respond: f64,
    pub(crate) latency: f64,
    pub(crate) latency_min: Duration,
    pub(crate) latency_max: Duration,
}

impl Rates {
    pub(crate) fn validate(&self, can_respond: bool) -> Result<(), ConfigError> {
        check::in_closed("chaos.error_rate", self.error, 0.0, 1.0)?;
        check::in_closed("chaos.hang_rate", self.hang, 0.0, 1.0)?;
        check::in_closed("chaos.respond_rate", self.respond, 0.0, 1.0)?;
        check::in_closed("chaos.latency_rate", self.latency, 0.0, 1.0)?;
        let faults = self.error + self.hang + self.respond;
        if faults > 1.0 + 1e-9 {
            return Err(ConfigError::new(
                "chaos.error_rate + chaos.hang_rate + chaos.respond_rate",
                faults,
                "the rates of faults that replace the call must add up to at most 1",
            ));
        }
        if self.respond > 0.0 && !can_respond {
            return Err(ConfigError::new(
                "chaos.respond_rate",
                self.respond,
                "needs a response to give: set it with `respond`",
            ));
        }
        if self.latency_min > self.latency_max {
            return Err(ConfigError::conflict(
                "chaos.latency_min",
                self.latency_min,
                "chaos.latency_max",
                self.latency_max,
                "the least added latency must not exceed the most",
            ));
        }
        Ok(())
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

impl Settings {
    pub(crate) fn new(name: Cow<'static, str>, rates: Rates, enabled: bool, seed: u64) -> Self {
        let settings = Self {
            name,
            enabled: AtomicBool::new(enabled),
            error: Rate::default(),
            hang: Rate::default(),
            respond: Rate::default(),
            latency: Rate::default(),
            latency_min: AtomicU64::new(0),
            latency_max: AtomicU64::new(0),
            random: SeededRandom::new(seed),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            hangs: AtomicU64::new(0),
            responses: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
            decisions: crate::event::Decisions::new(),
        };
        settings.store(rates);
        settings
    }

    pub(crate) fn store(&self, rates: Rates) {
        self.error.set(rates.error);
        self.hang.set(rates.hang);
        self.respond.set(rates.respond);
        self.latency.set(rates.latency);
        self.latency_min
            .store(nanos(rates.latency_min), Ordering::Relaxed);
        self.latency_max
            .store(nanos(rates.latency_max), Ordering::Relaxed);
    }

    pub(crate) fn load(&self) -> Rates {
        Rates {
            error: self.error.get(),
            hang: self.hang.get(),
            respond: self.respond.get(),
            latency: self.latency.get(),
            latency_min: Duration::from_nanos(self.latency_min.load(Ordering::Relaxed)),
            latency_max: Duration::from_nanos(self.latency_max.load(Ordering::Relaxed)),
        }
    }

    pub(crate) fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Draws the fault and the added latency of one call.
    #[inline]
    pub(crate) fn draw(&self) -> (Fault, Option<Duration>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !self.is_enabled() {
            return (Fault::Pass, None);
        }
        self.draw_enabled()
    }

    /// [`draw`](Self::draw) once the layer is switched on.
    #[inline(never)]
    fn draw_enabled(&self) -> (Fault, Option<Duration>) {
        let rates = self.load();
        let u = unit(self.random.next_u64());
        let fault = if u < rates.error {
            self.errors.fetch_add(1, Ordering::Relaxed);
            Fault::Error
        } else if u < rates.error + rates.hang {
            self.hangs.fetch_add(1, Ordering::Relaxed);
            Fault::Hang
        } else if u < rates.error + rates.hang + rates.respond {
            self.responses.fetch_add(1, Ordering::Relaxed);
            Fault::Respond
        } else {
            Fault::Pass
        };
        let delay =
            (rates.latency > 0.0 && unit(self.random.next_u64()) < rates.latency).then(|| {
                self.delayed.fetch_add(1, Ordering::Relaxed);
                let spread = rates.latency_max.saturating_sub(rates.latency_min);
                rates.latency_min + spread.mul_f64(unit(self.random.next_u64()))
            });
        (fault, delay)
    }
}
