//! A `DebuggingRecorder` installed on the test's thread, read without
//! losing anything.
//!
//! Its snapshots drain what they read: counters and gauges are swapped to
//! zero and histograms emptied. A gauge moved by increments (a bulkhead's
//! in-flight count) would then drift, and a gauge set on transitions only
//! (a breaker's state) would read zero until the next one. [`Metrics::read`]
//! therefore writes every counter and gauge back through the recorder right
//! after the snapshot and keeps the histogram values it drained: reads can
//! be repeated. Tests run on a current-thread runtime, so nothing updates a
//! metric between the snapshot and the write-back.

use std::collections::BTreeMap;
use std::sync::Mutex;

// `::` for the crate: this test binary has a `metrics` module too.
use ::metrics::{Key, Level, LocalRecorderGuard, Metadata, Recorder};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

pub(crate) type Labels = BTreeMap<String, String>;

/// A metric name and its labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) labels: Labels,
}

impl Series {
    fn of(key: &Key) -> Self {
        Self {
            name: key.name().to_owned(),
            labels: key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect(),
        }
    }

    fn is(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.name == name && self.labels == labels_of(labels)
    }
}

pub(crate) fn labels_of(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const METADATA: Metadata<'static> = Metadata::new("observe_tests", Level::INFO, None);

/// The recorder of one test.
pub(crate) struct Metrics {
    recorder: DebuggingRecorder,
    snapshotter: Snapshotter,
    histograms: Mutex<BTreeMap<Series, Vec<f64>>>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        Self {
            recorder,
            snapshotter,
            histograms: Mutex::default(),
        }
    }

    /// Makes this the recorder of the current thread until the guard is
    /// dropped. Install it before building layers: they register their
    /// handles when built.
    pub(crate) fn install(&self) -> LocalRecorderGuard<'_> {
        ::metrics::set_default_local_recorder(&self.recorder)
    }

    /// Every metric now.
    pub(crate) fn read(&self) -> Reading {
        let mut reading = Reading::default();
        let mut kept = self.histograms.lock().unwrap();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let (_, key) = key.into_parts();
            let series = Series::of(&key);
            match value {
                DebugValue::Counter(n) => {
                    self.recorder.register_counter(&key, &METADATA).absolute(n);
                    reading.counters.insert(series, n);
                }
                DebugValue::Gauge(v) => {
                    self.recorder.register_gauge(&key, &METADATA).set(v.0);
                    reading.gauges.insert(series, v.0);
                }
                DebugValue::Histogram(values) => {
                    kept.entry(series)
                        .or_default()
                        .extend(values.into_iter().map(|v| v.0));
                }
            }
        }
        reading.histograms = kept.clone();
        reading
    }
}

/// Every metric at one moment.
#[derive(Debug, Default)]
pub(crate) struct Reading {
    counters: BTreeMap<Series, u64>,
    gauges: BTreeMap<Series, f64>,
    histograms: BTreeMap<Series, Vec<f64>>,
}

impl Reading {
    /// The counter with exactly these labels, if it was registered.
    pub(crate) fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        self.counters
            .iter()
            .find(|(s, _)| s.is(name, labels))
            .map(|(_, v)| *v)
    }

    /// The counter with exactly these labels, 0 if it was never registered.
    pub(crate) fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.counter(name, labels).unwrap_or(0)
    }

    /// Every counter called `name`, with its labels.
    pub(crate) fn counters(&self, name: &str) -> Vec<(Labels, u64)> {
        self.counters
            .iter()
            .filter(|(s, _)| s.name == name)
            .map(|(s, v)| (s.labels.clone(), *v))
            .collect()
    }

    /// The sum of the counters called `name`.
    pub(crate) fn total(&self, name: &str) -> u64 {
        self.counters(name).iter().map(|(_, v)| v).sum()
    }

    /// The gauge with exactly these labels, if it was registered.
    pub(crate) fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.gauges
            .iter()
            .find(|(s, _)| s.is(name, labels))
            .map(|(_, v)| *v)
    }

    /// Every gauge called `name`, with its labels.
    pub(crate) fn gauges(&self, name: &str) -> Vec<(Labels, f64)> {
        self.gauges
            .iter()
            .filter(|(s, _)| s.name == name)
            .map(|(s, v)| (s.labels.clone(), *v))
            .collect()
    }

    /// Every value recorded in the histogram with exactly these labels.
    pub(crate) fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.histograms
            .iter()
            .find(|(s, _)| s.is(name, labels))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}
