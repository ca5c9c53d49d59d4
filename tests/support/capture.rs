//! A subscriber that keeps every `steadfast` span and event of one test,
//! with their fields as text.
//!
//! Include it with `#[path = "../support/capture.rs"] mod capture;`.
//!
//! Tests of one binary run at once on their own threads, most of them with
//! no subscriber. A subscriber made the thread's default with
//! `tracing::subscriber::set_default` loses events there: while it is the
//! only one registered, a callsite first reached on another thread has its
//! interest decided by that thread's (absent) subscriber, and `never` is
//! cached for every thread. So one subscriber is made the global default,
//! once per binary, and hands each span and event to the capture installed
//! on the thread it happens on.

// Each binary uses the part it needs.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Once};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

pub(crate) type Fields = BTreeMap<String, String>;

/// One span, with the fields recorded when it was made and after.
#[derive(Debug, Clone)]
pub(crate) struct SpanRecord {
    pub(crate) name: &'static str,
    pub(crate) target: String,
    pub(crate) level: Level,
    pub(crate) fields: Fields,
}

/// One event, with the span it happened in.
#[derive(Debug, Clone)]
pub(crate) struct EventRecord {
    pub(crate) target: String,
    pub(crate) level: Level,
    pub(crate) fields: Fields,
    /// The index in [`Capture::spans`] of the span entered when it
    /// happened.
    pub(crate) span: Option<usize>,
}

impl EventRecord {
    /// The field `name`, `""` if the event has none.
    pub(crate) fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }

    pub(crate) fn message(&self) -> &str {
        self.field("message")
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.fields.contains_key(name)
    }
}

impl SpanRecord {
    pub(crate) fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

#[derive(Default)]
struct State {
    spans: Vec<SpanRecord>,
    events: Vec<EventRecord>,
    entered: Vec<usize>,
}

/// Keeps what `steadfast` reports while it is the default subscriber.
#[derive(Clone, Default)]
pub(crate) struct Capture {
    state: Arc<Mutex<State>>,
}

thread_local! {
    static CURRENT: RefCell<Option<Capture>> = const { RefCell::new(None) };
}

/// Uninstalls the thread's capture when dropped.
#[must_use = "the capture is uninstalled when the guard is dropped"]
pub(crate) struct CaptureGuard(Option<Capture>);

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

impl Capture {
    /// Keeps what happens on this thread until the guard is dropped.
    pub(crate) fn install() -> (Capture, CaptureGuard) {
        static GLOBAL: Once = Once::new();
        GLOBAL.call_once(|| {
            tracing::subscriber::set_global_default(Router)
                .expect("no other global subscriber in this test binary");
        });
        let capture = Capture::default();
        let previous = CURRENT.with(|current| current.borrow_mut().replace(capture.clone()));
        (capture, CaptureGuard(previous))
    }

    pub(crate) fn spans(&self) -> Vec<SpanRecord> {
        self.state.lock().unwrap().spans.clone()
    }

    pub(crate) fn events(&self) -> Vec<EventRecord> {
        self.state.lock().unwrap().events.clone()
    }

    /// The spans called `call`, in the order they were made.
    pub(crate) fn calls(&self) -> Vec<SpanRecord> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == "call" && s.target == "steadfast::observe")
            .collect()
    }

    /// The events with this message.
    pub(crate) fn events_saying(&self, message: &str) -> Vec<EventRecord> {
        self.events()
            .into_iter()
            .filter(|e| e.message() == message)
            .collect()
    }

    /// The one event with this message.
    pub(crate) fn event_saying(&self, message: &str) -> EventRecord {
        let mut found = self.events_saying(message);
        assert_eq!(
            found.len(),
            1,
            "one event {message:?} expected: {:#?}",
            self.events()
        );
        found.remove(0)
    }

    pub(crate) fn clear(&self) {
        let mut state = self.state.lock().unwrap();
        state.spans.clear();
        state.events.clear();
    }
}

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

fn ours(metadata: &Metadata<'_>) -> bool {
    metadata.target().starts_with("steadfast")
}

/// The global subscriber: each span and event goes to the capture of the
/// thread it happens on, if there is one.
struct Router;

fn current() -> Option<Capture> {
    CURRENT.with(|current| current.borrow().clone())
}

impl Subscriber for Router {
    // Decided each time: whether a thread has a capture changes.
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        ours(metadata) && CURRENT.with(|current| current.borrow().is_some())
    }

    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        // A span made with no capture is disabled and never reaches here;
        // one whose capture was uninstalled since gets an id of its own.
        current().map_or(Id::from_u64(u64::MAX), |c| c.new_span(attributes))
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(capture) = current() {
            capture.record(span, values);
        }
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        if let Some(capture) = current() {
            capture.event(event);
        }
    }

    fn enter(&self, span: &Id) {
        if let Some(capture) = current() {
            capture.enter(span);
        }
    }

    fn exit(&self, span: &Id) {
        if let Some(capture) = current() {
            capture.exit(span);
        }
    }
}

impl Capture {
    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let mut fields = Fields::new();
        attributes.record(&mut Visitor(&mut fields));
        let metadata = attributes.metadata();
        let mut state = self.state.lock().unwrap();
        state.spans.push(SpanRecord {
            name: metadata.name(),
            target: metadata.target().to_owned(),
            level: *metadata.level(),
            fields,
        });
        // Span ids start from 1; ours are the index plus one.
        Id::from_u64(state.spans.len() as u64)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut state = self.state.lock().unwrap();
        let index = span.into_u64() as usize - 1;
        if let Some(span) = state.spans.get_mut(index) {
            values.record(&mut Visitor(&mut span.fields));
        }
    }

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::new();
        event.record(&mut Visitor(&mut fields));
        let mut state = self.state.lock().unwrap();
        let span = state.entered.last().copied();
        state.events.push(EventRecord {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
            span,
        });
    }

    fn enter(&self, span: &Id) {
        let index = span.into_u64() as usize - 1;
        self.state.lock().unwrap().entered.push(index);
    }

    fn exit(&self, span: &Id) {
        let index = span.into_u64() as usize - 1;
        let mut state = self.state.lock().unwrap();
        if let Some(at) = state.entered.iter().rposition(|&i| i == index) {
            state.entered.remove(at);
        }
    }
}
