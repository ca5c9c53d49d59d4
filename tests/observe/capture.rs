//! A subscriber that keeps every `steadfast` span and event, with their
//! fields as text.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::{DefaultGuard, Interest};
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

impl Capture {
    /// Makes a capture the thread's default subscriber until the guard is
    /// dropped.
    pub(crate) fn install() -> (Capture, DefaultGuard) {
        let capture = Capture::default();
        let guard = tracing::subscriber::set_default(capture.clone());
        // Tests of this binary run on other threads without a subscriber;
        // interest is decided per callsite use, never cached as `never`.
        tracing::callsite::rebuild_interest_cache();
        (capture, guard)
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

impl Subscriber for Capture {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        ours(metadata)
    }

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

    fn record_follows_from(&self, _: &Id, _: &Id) {}

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
